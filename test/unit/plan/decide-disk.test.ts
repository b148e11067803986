import { describe, expect, it } from "vitest";
import type { DiskFacts } from "../../../src/facts/disk.js";
import { decideDisk } from "../../../src/plan/decide-disk.js";
import { bloatedDisk, GiB, healthyInfo, MiB, policy } from "../../helpers/facts.js";

const decide = (facts: DiskFacts, p = policy) =>
  decideDisk({ host: "kvm01", guest: "web01", policy: p, facts });
const info = healthyInfo;

describe("deciding what to do with a disk", () => {
  it("rewrites a bloated image, converting before verifying before swapping", () => {
    const plan = decide(bloatedDisk());
    expect(plan.action).toBe("rewrite");
    expect(plan.estimate).toMatchObject({
      allocatedBefore: 4 * GiB,
      allocatedAfter: 1 * GiB,
      reclaim: 3 * GiB,
    });
    expect(plan.steps.map((s) => s.kind)).toEqual([
      "convert",
      "copy-attributes",
      "flush",
      "verify",
      "swap",
      "finish-journal",
    ]);
  });

  it("carries the original's qcow2 options into the conversion", () => {
    expect(decide(bloatedDisk()).convert?.options).toEqual([
      "compat=1.1",
      "cluster_size=65536",
      "lazy_refcounts=on",
      "compression_type=zlib",
      "extended_l2=off",
      "refcount_bits=16",
    ]);
  });

  it("keeps a backup only when the policy asks, before the swap", () => {
    const plan = decide(bloatedDisk(), { ...policy, convert: { ...policy.convert, keepBackup: true } });
    const kinds = plan.steps.map((s) => s.kind);
    expect(kinds.indexOf("keep-backup")).toBeLessThan(kinds.indexOf("swap"));
  });

  it("leaves an image alone when it would give back less than min_reclaimable", () => {
    const plan = decide(
      bloatedDisk({ measure: { required: 4 * GiB - 100 * MiB, fullyAllocated: 20 * GiB, bitmaps: 0 } }),
    );
    expect(plan.action).toBe("ok");
    expect(plan.reason).toMatch(/below min_reclaimable 256 MiB/);
    expect(plan.steps).toEqual([]);
  });

  it("records the policy values it was decided under, whatever it decided", () => {
    const guestPolicy = {
      ...policy,
      zero: "fill" as const,
      fillReserve: { kind: "bytes" as const, bytes: 2 * GiB },
      shutdown: "graceful" as const,
      shutdownTimeoutMs: 600_000,
      convert: { ...policy.convert, compress: true },
    };
    const expected = {
      minReclaimableBytes: 256 * MiB,
      minRatio: 0.1,
      zero: "fill",
      fillReserve: { kind: "bytes", bytes: 2 * GiB },
      shutdown: "graceful",
      shutdownTimeoutMs: 600_000,
      compress: true,
      keepBackup: false,
    };
    expect(decide(bloatedDisk(), guestPolicy).decidedBy).toEqual(expected);
    const missing = bloatedDisk({ stat: { exists: false } });
    expect(decide(missing, guestPolicy)).toMatchObject({ action: "skip", decidedBy: expected });
  });

  it("leaves an image alone when the share reclaimed is below min_ratio", () => {
    const plan = decide(bloatedDisk(), { ...policy, minReclaimableBytes: 0, minRatio: 0.9 });
    expect(plan.action).toBe("ok");
    expect(plan.reason).toMatch(/below min_ratio 90%/);
  });

  it.each<[string, Partial<DiskFacts>, RegExp]>([
    [
      "an image in use",
      { inUse: { message: 'Failed to get shared "write" lock' } },
      /in use by a running process/,
    ],
    [
      "internal snapshots",
      { info: { ...info, snapshots: ["before-upgrade"] } },
      /internal snapshots \(before-upgrade\)/,
    ],
    ["a backing file", { info: { ...info, backingFile: "/images/base.qcow2" } }, /backing file.*flatten/],
    ["encryption", { info: { ...info, encrypted: true } }, /encrypted/],
    ["a raw image", { info: { ...info, format: "raw", options: {} } }, /format raw/],
    ["a corrupt image", { info: { ...info, corrupt: true } }, /corrupt/],
    ["a dirty image", { info: { ...info, dirty: true } }, /dirty flag/],
    ["a missing file", { stat: { exists: false } }, /no such file/],
    [
      "a symbolic link",
      { stat: { ...(bloatedDisk().stat as object), type: "symlink" } as DiskFacts["stat"] },
      /symbolic link/,
    ],
    [
      "hard links",
      { stat: { ...(bloatedDisk().stat as object), links: 2 } as DiskFacts["stat"] },
      /2 hard links/,
    ],
    [
      "too little free space",
      { free: { availableBytes: 512 * MiB } },
      /not enough free space .*needs up to 1\.1 GiB.*512 MiB is free/,
    ],
    [
      "another runner's conversion",
      { temp: { ...(bloatedDisk().stat as object), inode: 78 } as DiskFacts["stat"], tempInUse: true },
      /another process is rewriting/,
    ],
  ])("refuses %s and says why", (_name, overrides, reason) => {
    const plan = decide(bloatedDisk(overrides));
    expect(plan.action).toBe("skip");
    expect(plan.reason).toMatch(reason);
    expect(plan.steps.some((s) => s.kind === "convert" || s.kind === "swap")).toBe(false);
  });

  const stat = bloatedDisk().stat as Extract<DiskFacts["stat"], { exists: true }>;
  const original = { device: stat.device, inode: stat.inode, size: stat.size, mtimeSec: stat.mtimeSec };
  const tempStat = { ...stat, inode: 99, size: 1 * GiB, allocated: 1 * GiB };
  const converted = { device: tempStat.device, inode: 99, size: tempStat.size, mtimeSec: tempStat.mtimeSec };
  const journal = (phase: string, extra: object = {}) => ({
    exists: true as const,
    text: JSON.stringify({
      version: 1,
      image: "/images/web01.qcow2",
      temp: "/images/.web01.qcow2.reclaim-tmp",
      phase,
      original,
      startedAt: "x",
      ...extra,
    }),
  });

  it("removes a half-made temporary image first, then rewrites again", () => {
    const plan = decide(bloatedDisk({ temp: tempStat, journal: journal("converting") }));
    expect(plan.action).toBe("rewrite");
    expect(plan.steps[0]?.kind).toBe("remove-leftovers");
    expect(plan.leftovers).toEqual([
      "/images/.web01.qcow2.reclaim-tmp",
      "/images/.web01.qcow2.reclaim-journal",
    ]);
  });

  it("finishes a verified rewrite that was interrupted before its swap", () => {
    const plan = decide(bloatedDisk({ temp: tempStat, journal: journal("verified", { converted }) }));
    expect(plan.action).toBe("finish");
    expect(plan.steps.map((s) => s.kind)).toEqual(["swap", "finish-journal"]);
  });

  it("does not finish when the original changed since it was verified", () => {
    const changed = { ...stat, mtimeSec: stat.mtimeSec + 60 };
    const plan = decide(
      bloatedDisk({ stat: changed, temp: tempStat, journal: journal("verified", { converted }) }),
    );
    expect(plan.action).toBe("rewrite");
    expect(plan.steps[0]?.kind).toBe("remove-leftovers");
  });

  it("only removes the journal when the swap already happened", () => {
    const swapped = { ...tempStat };
    const plan = decide(bloatedDisk({ stat: swapped, journal: journal("verified", { converted }) }));
    expect(plan.action).toBe("cleanup");
    expect(plan.leftovers).toEqual(["/images/.web01.qcow2.reclaim-journal"]);
  });

  it("cleans up leftovers even when the image itself needs nothing", () => {
    const plan = decide(bloatedDisk({ temp: tempStat, journal: journal("converting") }), {
      ...policy,
      minRatio: 0.99,
    });
    expect(plan.action).toBe("cleanup");
    expect(plan.steps.map((s) => s.kind)).toEqual(["remove-leftovers"]);
  });

  describe("a conversion an interrupted run left detached on the host", () => {
    const worker = (w: NonNullable<DiskFacts["worker"]>) =>
      bloatedDisk({ temp: tempStat, journal: journal("converting"), worker: w });

    it("reattaches to it while it runs, then verifies and swaps", () => {
      const plan = decide({ ...worker({ state: "running" }), tempInUse: true });
      expect(plan.action).toBe("finish");
      expect(plan.convert?.reattach).toBe(true);
      expect(plan.steps.map((s) => s.kind)).toEqual([
        "convert",
        "copy-attributes",
        "flush",
        "verify",
        "swap",
        "finish-journal",
      ]);
      expect(plan.steps[0]?.description).toMatch(/reattach/);
      expect(plan.leftovers).toEqual([]);
    });

    it("verifies and swaps what it made once it exited 0, converting nothing again", () => {
      const plan = decide(worker({ state: "exited", code: 0 }));
      expect(plan.action).toBe("finish");
      expect(plan.convert?.reattach).toBeUndefined();
      expect(plan.steps.map((s) => s.kind)).not.toContain("convert");
      expect(plan.steps.map((s) => s.kind)).toContain("verify");
    });

    it("keeps the backup the interrupted run meant to keep", () => {
      const facts = bloatedDisk({
        temp: tempStat,
        journal: journal("converting", { backup: "/images/web01.qcow2.reclaim-backup-X" }),
        worker: { state: "running" },
      });
      const plan = decide(facts);
      expect(plan.backup).toBe("/images/web01.qcow2.reclaim-backup-X");
      expect(plan.steps.map((s) => s.kind)).toContain("keep-backup");
    });

    it.each([
      ["it failed", { state: "exited", code: 1 } as const],
      ["it died without an exit status", { state: "gone" } as const],
    ])("starts over when %s, removing its files", (_, state) => {
      const plan = decide(worker(state));
      expect(plan.action).toBe("rewrite");
      expect(plan.steps[0]?.kind).toBe("remove-leftovers");
      expect(plan.leftovers).toEqual([
        "/images/.web01.qcow2.reclaim-tmp",
        "/images/.web01.qcow2.reclaim-journal",
        "/images/.web01.qcow2.reclaim-convert.log",
        "/images/.web01.qcow2.reclaim-convert.exit",
      ]);
    });

    it("does not take it over when the image changed since it started: it is stopped and removed", () => {
      const changed = { ...stat, mtimeSec: stat.mtimeSec + 60 };
      const plan = decide({ ...worker({ state: "running" }), stat: changed, tempInUse: true });
      expect(plan.action).toBe("rewrite");
      expect(plan.steps[0]?.kind).toBe("remove-leftovers");
      expect(plan.leftovers).toContain("/images/.web01.qcow2.reclaim-convert.log");
    });

    it("stops and removes it when the policy no longer wants a rewrite", () => {
      const plan = decide(worker({ state: "running" }), { ...policy, minRatio: 0.99 });
      expect(plan.action).toBe("cleanup");
      expect(plan.leftovers).toContain("/images/.web01.qcow2.reclaim-convert.log");
    });

    it("leaves alone a temporary image locked by a process that is not a conversion of ours", () => {
      const plan = decide(bloatedDisk({ temp: tempStat, journal: journal("converting"), tempInUse: true }));
      expect(plan.action).toBe("skip");
      expect(plan.reason).toMatch(/another process is rewriting/);
    });
  });

  it("counts a stale temporary image's space as free, since it is removed first", () => {
    const plan = decide(
      bloatedDisk({ free: { availableBytes: 200 * MiB }, temp: tempStat, journal: journal("converting") }),
    );
    expect(plan.action).toBe("rewrite");
  });
});

describe("an image its running guest holds", () => {
  const LOCK = 'Failed to get shared "write" lock';
  const held = (overrides: Partial<DiskFacts> = {}) =>
    bloatedDisk({ inUse: { message: LOCK }, ...overrides });
  const decideHeld = (facts: DiskFacts, extra: { guestStops?: boolean; whyRunning?: string } = {}) =>
    decideDisk({ host: "kvm01", guest: "web01", policy, facts, ...extra });

  it("is planned as a rewrite once its guest is shut down, when the guest may be stopped", () => {
    const plan = decideHeld(held(), { guestStops: true });
    expect(plan.action).toBe("rewrite");
    expect(plan.reason).toBe("would give back ~3 GiB (75%), once its guest is shut down");
    expect(plan.afterShutdown).toBe(true);
    expect(plan.steps.map((s) => s.kind)).toEqual([
      "convert",
      "copy-attributes",
      "flush",
      "verify",
      "swap",
      "finish-journal",
    ]);
  });

  it("is skipped while its guest keeps running, with the reason the guest is not stopped", () => {
    const plan = decideHeld(held(), { whyRunning: "shutdown: never keeps the guest running" });
    expect(plan.action).toBe("skip");
    expect(plan.reason).toBe(
      `in use by a running process (${LOCK}); a running VM's image is never rewritten (shutdown: never keeps the guest running)`,
    );
    expect(plan).not.toHaveProperty("afterShutdown");
    expect(plan.steps).toEqual([]);
  });

  it("is skipped without a second reason when nothing says why the guest keeps running", () => {
    expect(decideHeld(held()).reason).toBe(
      `in use by a running process (${LOCK}); a running VM's image is never rewritten`,
    );
  });

  it("is still refused for a hazard of its own, even though its guest may be stopped", () => {
    const plan = decideHeld(held({ info: { ...info, snapshots: ["s1"] } }), { guestStops: true });
    expect(plan.action).toBe("skip");
    expect(plan.reason).toMatch(/internal snapshots \(s1\)/);
  });

  it("is marked for a decision after the fill even when not worth a rewrite yet", () => {
    const plan = decideHeld(
      held({ measure: { required: 4 * GiB - 100 * MiB, fullyAllocated: 20 * GiB, bitmaps: 0 } }),
      { guestStops: true },
    );
    expect(plan.action).toBe("ok");
    expect(plan.afterShutdown).toBe(true);
  });

  it("is not marked for a shutdown when it is not locked at all", () => {
    expect(decideHeld(bloatedDisk(), { guestStops: true })).not.toHaveProperty("afterShutdown");
  });
});

describe("the estimate after a guest-side fill", () => {
  const withZeros = (facts: DiskFacts, zerosWritten: number) =>
    decideDisk({ host: "kvm01", guest: "web01", policy, facts, zerosWritten });

  it("counts the zeros the fill wrote as space the rewrite gives back", () => {
    const facts = bloatedDisk({ measure: { required: 3 * GiB, fullyAllocated: 20 * GiB, bitmaps: 0 } });
    expect(decide(facts).estimate).toMatchObject({ allocatedAfter: 3 * GiB, reclaim: 1 * GiB });
    expect(withZeros(facts, 2 * GiB).estimate).toEqual({
      allocatedBefore: 4 * GiB,
      allocatedAfter: 1 * GiB,
      reclaim: 3 * GiB,
      method:
        "qemu-img measure, less the 2 GiB of zeros the guest-side fill wrote; other zeros stored as data count as data, so the result may be smaller",
    });
  });

  it("turns an image below min_reclaimable into a rewrite", () => {
    const facts = bloatedDisk({
      measure: { required: 4 * GiB - 100 * MiB, fullyAllocated: 20 * GiB, bitmaps: 0 },
    });
    expect(decide(facts).action).toBe("ok");
    const plan = withZeros(facts, 1 * GiB);
    expect(plan.action).toBe("rewrite");
    expect(plan.reason).toBe("would give back ~1.1 GiB (27%)");
  });

  it("never estimates below the persistent bitmaps, which stay", () => {
    const facts = bloatedDisk({
      measure: { required: 1 * GiB, fullyAllocated: 20 * GiB, bitmaps: 64 * MiB },
    });
    expect(withZeros(facts, 10 * GiB).estimate).toMatchObject({
      allocatedAfter: 64 * MiB,
      reclaim: 4 * GiB - 64 * MiB,
    });
  });

  it("says the estimate is qemu-img measure alone when no fill ran", () => {
    expect(withZeros(bloatedDisk(), 0).estimate?.method).toBe(
      "qemu-img measure: clusters the image allocates now; zeros stored as data count as data, so the result may be smaller",
    );
  });
});
