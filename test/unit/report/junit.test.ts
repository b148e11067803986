import { describe, expect, it } from "vitest";
import { formatJunit } from "../../../src/report/junit.js";
import type { RunResult } from "../../../src/run/results.js";
import { samplePlan } from "./sample-run.js";

const nasty = `bad & <worse> "quoted" 'single'\ttab\nline \u0001 \uD800 ok`;

function run(): RunResult {
  return {
    guests: [{ host: "kvm01", guest: "web01", ok: false, message: nasty, outcomes: [], durationMs: 1500 }],
    vms: [],
    disks: [
      {
        host: "kvm01",
        guest: "web01",
        path: "/images/a&b.qcow2",
        action: "rewrite",
        status: "failed",
        message: nasty,
        steps: [{ kind: "convert", ok: false, durationMs: 2000, message: nasty }],
        durationMs: 2000,
      },
    ],
    hosts: [
      {
        host: "kvm01",
        ok: 0,
        changed: 0,
        skipped: 0,
        failed: 2,
        unreachable: false,
        allocatedBefore: 0,
        allocatedAfter: 0,
        reclaimed: 0,
      },
    ],
    durationMs: 3500,
  };
}

describe("the JUnit report", () => {
  const xml = formatJunit(samplePlan(), run());

  it("escapes text and attributes, and replaces what XML cannot hold", () => {
    expect(xml).toContain(
      'message="bad &amp; &lt;worse&gt; &quot;quoted&quot; &apos;single&apos;&#9;tab&#10;line \uFFFD \uFFFD ok"',
    );
    expect(xml).toContain(
      ">bad &amp; &lt;worse&gt; \"quoted\" 'single'\ttab\nline \uFFFD \uFFFD ok\nconvert:",
    );
    expect(xml).toContain('<testcase name="web01 /images/a&amp;b.qcow2" classname="kvm01" time="2.000">');
    expect([...xml].filter((c) => (c.codePointAt(0) ?? 0) < 9)).toEqual([]);
  });

  it("counts a failed guest-side step as a failing testcase of its host, with the failed step as the type", () => {
    expect(xml).toContain('<testcase name="web01 (inside the guest)" classname="kvm01" time="1.500">');
    expect(xml).toContain('<failure message="bad');
    expect(xml).toContain('type="convert"');
    expect(xml).toMatch(
      /<testsuite name="kvm01" tests="2" failures="2" errors="0" skipped="0" time="3.500">/,
    );
  });

  it("has no timestamp unless one is given, and a suite for every host of the plan", () => {
    expect(xml).not.toContain("timestamp=");
    expect(xml).toContain(
      '<testsuite name="kvm02" tests="0" failures="0" errors="0" skipped="0" time="0.000"/>',
    );
    const stamped = formatJunit(samplePlan(), run(), { startedAt: "2026-01-15T02:00:00.123Z" });
    expect(stamped).toContain('timestamp="2026-01-15T02:00:00"');
  });
});
