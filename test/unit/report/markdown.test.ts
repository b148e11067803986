import { describe, expect, it } from "vitest";
import { bar, formatMarkdown, md } from "../../../src/report/markdown.js";
import type { DiskResult, RunResult } from "../../../src/run/results.js";
import { GiB } from "../../helpers/facts.js";
import { samplePlan } from "./sample-run.js";

function runOf(disks: DiskResult[]): RunResult {
  return { guests: [], vms: [], disks, hosts: [], durationMs: 1000 };
}

const disk = (extra: Partial<DiskResult>): DiskResult => ({
  host: "kvm01",
  guest: "web01",
  path: "/images/web01.qcow2",
  action: "rewrite",
  status: "changed",
  message: "rewritten and verified",
  steps: [],
  durationMs: 0,
  ...extra,
});

describe("the Markdown summary", () => {
  it("shows any text literally, on one line: a message cannot break the table or inject HTML", () => {
    expect(md("a | b *c* _d_ `e` <script> [x](y) ~f~ & g\\h\nnext")).toBe(
      "a \\| b \\*c\\* \\_d\\_ \\`e\\` \\<script\\> \\[x\\](y) \\~f\\~ \\& g\\\\h next",
    );
    const out = formatMarkdown(
      samplePlan(),
      runOf([disk({ status: "failed", message: "convert failed: x | y\nz <b>", allocatedBefore: GiB })]),
    );
    const row = out.split("\n").find((l) => l.includes("web01.qcow2") && l.startsWith("|"));
    expect(row?.split(/(?<!\\)\|/).length).toBe(10);
    expect(out).toContain("- kvm01 web01 /images/web01.qcow2: convert failed: x \\| y z \\<b\\>");
  });

  it("draws a bar per disk: dark for what stays, light for what was given back", () => {
    expect(bar(20 * GiB, 5 * GiB, 20)).toBe("█████░░░░░░░░░░░░░░░");
    expect(bar(GiB, GiB, 4)).toBe("████");
    // A small change still shows, and an image that is not empty keeps a mark.
    expect(bar(100 * GiB, 99.9 * GiB, 4)).toBe("███░");
    expect(bar(100 * GiB, 0.1 * GiB, 4)).toBe("█░░░");
    expect(bar(GiB, 0, 4)).toBe("░░░░");
    // An image that grew is a full bar (the text beside it says by how much).
    expect(bar(GiB, 2 * GiB, 4)).toBe("████");
  });

  it("keeps the code block of bars closed whatever a path holds", () => {
    const out = formatMarkdown(
      samplePlan(),
      runOf([disk({ path: "/images/```odd.qcow2", allocatedBefore: 2 * GiB, allocatedAfter: GiB })]),
    );
    expect(out).toContain("\n````text\n");
    expect(out).toMatch(/\n````\n/);
  });

  it("totals what every measured disk allocated before and after", () => {
    const out = formatMarkdown(
      samplePlan(),
      runOf([
        disk({ allocatedBefore: 4 * GiB, allocatedAfter: GiB }),
        disk({ path: "/images/b.qcow2", status: "ok", allocatedBefore: 2 * GiB }),
        disk({ path: "/images/c.qcow2", status: "skipped" }),
      ]),
    );
    expect(out).toMatch(/^## reclaim apply: 3 GiB reclaimed$/m);
    expect(out).toContain("| **total** |  | 3 disks |  | **6 GiB** | **3 GiB** | **3 GiB** |  |");
  });
});
