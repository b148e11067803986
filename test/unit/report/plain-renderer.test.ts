import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createPlainRenderer, type PlainLevel, plainLine } from "../../../src/report/plain-renderer.js";
import type { DiskRef, RunEvent } from "../../../src/run/events.js";
import { samplePlan, sampleResult, WEB01 } from "./sample-run.js";

const disk: DiskRef = { host: "kvm01", guest: "web01", path: WEB01 };
const plan = samplePlan();
const result = sampleResult(plan);

const events = {
  runStart: { type: "run-start", plan },
  stepStart: {
    type: "step-start",
    disk,
    step: "convert",
    description: "qemu-img convert into a temporary file",
  },
  progress: { type: "step-progress", disk, step: "convert", percent: 42.4 },
  stepEnd: { type: "step-end", disk, step: "convert", ok: true, durationMs: 1234 },
  runEnd: { type: "run-end", result },
} satisfies Record<string, RunEvent>;

function lines(level: PlainLevel, sequence: readonly [RunEvent, number][]): string[] {
  let out = "";
  const sink = new Writable({
    write: (chunk, _encoding, done) => {
      out += String(chunk);
      done();
    },
  });
  let now = 0;
  const renderer = createPlainRenderer(sink, {
    level,
    clock: () => new Date(Date.UTC(2026, 0, 15, 2) + now),
  });
  for (const [event, at] of sequence) {
    now = at;
    renderer.onEvent(event);
  }
  return out.split("\n").filter(Boolean);
}

describe("the plain renderer's levels", () => {
  it("shows the run's start and end only when verbose", () => {
    expect(plainLine(events.runStart, "normal")).toBeUndefined();
    expect(plainLine(events.runEnd, "normal")).toBeUndefined();
    expect(plainLine(events.runStart, "verbose")).toMatch(/^run started: Plan: /);
    expect(plainLine(events.runEnd, "verbose")).toMatch(/^run ended in \d+\.\d s$/);
  });

  it("describes a step when verbose", () => {
    expect(plainLine(events.stepStart, "normal")).toBe(`kvm01 ${WEB01}: convert started`);
    expect(plainLine(events.stepStart, "verbose")).toBe(
      `kvm01 ${WEB01}: convert started: qemu-img convert into a temporary file`,
    );
  });

  it("shows every other event at both levels", () => {
    for (const level of ["normal", "verbose"] as const) {
      expect(plainLine(events.progress, level)).toBe(`kvm01 ${WEB01}: convert 42%`);
      expect(plainLine(events.stepEnd, level)).toBe(`kvm01 ${WEB01}: convert done in 1.2 s`);
    }
  });

  it("throttles progress to one line a step every 10 s, except when verbose", () => {
    const progress = events.progress;
    const sequence: [RunEvent, number][] = [
      [progress, 10_000],
      [progress, 12_000],
      [progress, 19_999],
      [progress, 20_000],
    ];
    expect(lines("normal", sequence)).toEqual([
      `[02:00:10] kvm01 ${WEB01}: convert 42%`,
      `[02:00:20] kvm01 ${WEB01}: convert 42%`,
    ]);
    expect(lines("verbose", sequence)).toHaveLength(4);
  });
});

describe("a long zero-fill's progress in plain lines", () => {
  const fill = (bytes: number): RunEvent => ({
    type: "guest-zero-progress",
    host: "kvm01",
    guest: "web01",
    mount: "/home",
    bytes,
    totalBytes: 800 * 1024 * 1024,
  });

  it("says how much of the fill is written", () => {
    expect(plainLine(fill(200 * 1024 * 1024), "normal")).toBe(
      "kvm01 web01: filling /home: 200 MiB of 800 MiB (25%)",
    );
  });

  it("is throttled to a line every 10 s per filesystem, except when verbose", () => {
    const sequence: [RunEvent, number][] = [
      [fill(1), 0],
      [fill(2), 5_000],
      [fill(3), 10_000],
    ];
    expect(lines("normal", sequence)).toHaveLength(2);
    expect(lines("verbose", sequence)).toHaveLength(3);
  });
});
