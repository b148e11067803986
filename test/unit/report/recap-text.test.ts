/** The recap compares each rewrite with its estimate, and says so when the result is larger. */
import { describe, expect, it } from "vitest";
import { formatRecap } from "../../../src/report/recap-text.js";
import type { DiskResult, RunResult } from "../../../src/run/results.js";
import { GiB, MiB } from "../../helpers/facts.js";

function rewritten(path: string, before: number, estimatedAfter: number, after: number): DiskResult {
  return {
    host: "kvm01",
    guest: "web01",
    path,
    action: "rewrite",
    status: "changed",
    message: "rewritten and verified",
    allocatedBefore: before,
    allocatedAfter: after,
    estimate: {
      allocatedBefore: before,
      allocatedAfter: estimatedAfter,
      reclaim: before - estimatedAfter,
      method: "qemu-img measure",
    },
    steps: [],
    durationMs: 1000,
  };
}

function run(disks: DiskResult[]): RunResult {
  const before = disks.reduce((sum, d) => sum + (d.allocatedBefore ?? 0), 0);
  const after = disks.reduce((sum, d) => sum + (d.allocatedAfter ?? 0), 0);
  return {
    guests: [],
    vms: [],
    disks,
    hosts: [
      {
        host: "kvm01",
        ok: 0,
        changed: disks.length,
        skipped: 0,
        failed: 0,
        unreachable: false,
        allocatedBefore: before,
        allocatedAfter: after,
        reclaimed: before - after,
      },
    ],
    durationMs: 2000,
  };
}

describe("the recap's estimates", () => {
  it("compare each rewritten image with its estimate, and all of them in the total", () => {
    const text = formatRecap(
      run([
        rewritten("/images/a.qcow2", 10 * GiB, 2 * GiB, 1.5 * GiB),
        rewritten("/images/b.qcow2", 5 * GiB, 1 * GiB, 1 * GiB + 200 * MiB),
      ]),
    );
    expect(text).toContain(
      "/images/a.qcow2: rewritten and verified  10 GiB → 1.5 GiB (estimated ≤ 2 GiB, got 1.5 GiB)",
    );
    expect(text).toContain(
      "/images/b.qcow2: rewritten and verified  5 GiB → 1.2 GiB (estimated ≤ 1 GiB, got 1.2 GiB: 200 MiB more than the estimate)",
    );
    expect(text).toMatch(/^reclaimed 12.3 GiB in 2.0 s; 2 rewritten disks: estimated ≤ 3 GiB, got 2.7 GiB$/m);
  });

  it("leave the total alone when nothing was rewritten", () => {
    expect(formatRecap(run([]))).toMatch(/^reclaimed 0 B in 2.0 s$/m);
  });
});
