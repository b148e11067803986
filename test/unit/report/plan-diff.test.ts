/**
 * `--diff`: the policy values under each disk and what each decided, from the plan's data alone.
 * The realistic whole is in the golden file plan-diff.txt; these are the cases it does not show.
 */
import { describe, expect, it } from "vitest";
import type { ReclaimPolicy } from "../../../src/config/model.js";
import { buildPlan } from "../../../src/plan/build.js";
import { decideDisk } from "../../../src/plan/decide-disk.js";
import type { DiskPlan, GuestPlan, GuestVmPlan } from "../../../src/plan/plan.js";
import { formatDecision } from "../../../src/report/plan-diff.js";
import { formatPlan, formatTotals } from "../../../src/report/plan-text.js";
import { decideZero } from "../../../src/tasks/zero-guest.js";
import { bloatedDisk, GiB, policy } from "../../helpers/facts.js";

const running: GuestVmPlan = {
  manager: "libvirt",
  state: "running",
  canShutDown: false,
  shutdown: false,
  timeoutMs: 300_000,
};

function guestOf(disk: DiskPlan, extra: Partial<GuestPlan> = {}): GuestPlan {
  return { name: disk.guest, play: "p", playIndex: 0, notes: [], disks: [disk], ...extra };
}

function decided(p: ReclaimPolicy, facts = bloatedDisk(), whyRunning?: string): DiskPlan {
  return decideDisk({
    host: "kvm01",
    guest: "web01",
    policy: p,
    facts,
    ...(whyRunning ? { whyRunning } : {}),
  });
}

describe("the policy values that decided a disk", () => {
  it("name the threshold that left a disk ok, with the policy's share as written", () => {
    const disk = decided({ ...policy, minReclaimableBytes: GiB, minRatio: 0.875 });
    expect(disk.action).toBe("ok");
    expect(formatDecision(disk, guestOf(disk)).slice(0, 2)).toEqual([
      "min_reclaimable 1 GiB: would give back ~3 GiB, enough",
      "min_ratio 87.5%: 75% of the 4 GiB it allocates, too little → ok",
    ]);
  });

  it("say shutdown: never is why a running guest's image is skipped, before any threshold", () => {
    const facts = bloatedDisk({ inUse: { message: 'Failed to get "write" lock' } });
    const disk = decided(policy, facts, "shutdown: never keeps the guest running");
    expect(disk.action).toBe("skip");
    expect(formatDecision(disk, guestOf(disk, { vm: running }))).toEqual([
      "min_reclaimable 256 MiB, min_ratio 10%: not applied: the disk was refused before it was measured (see why above)",
      "zero none: nothing is freed inside the guest first",
      "shutdown never: its running guest keeps the image locked → skip",
    ]);
  });

  it("show compress and keep_backup for a rewrite, and a zero mode whose guest-side steps did not run", () => {
    const disk = decided({
      ...policy,
      zero: "auto",
      convert: { format: "qcow2", compress: true, keepBackup: true },
    });
    const lines = formatDecision(
      disk,
      guestOf(disk, { notes: ["guest-side steps (zero: auto) skipped: no ssh"] }),
    );
    expect(lines).toContain("zero auto: nothing runs inside the guest (see the guest's notes)");
    expect(lines).toContain(
      "convert.compress true, keep_backup true → qemu-img convert -c compresses the new image; the original is kept as a hard link beside it",
    );
  });

  it("say why a fill was chosen and what it leaves free, and that sdelete keeps no reserve", () => {
    const disk = decided({ ...policy, zero: "fill", fillReserve: { kind: "bytes", bytes: 2 * GiB } });
    const filesystem = {
      mount: "/",
      device: "/dev/vda1",
      type: "ext4",
      sizeBytes: 20 * GiB,
      usedBytes: 4 * GiB,
      availableBytes: 16 * GiB,
      discard: false,
    };
    const linux = decideZero("web01", [filesystem], "fill", { kind: "bytes", bytes: 2 * GiB });
    expect(linux.steps).toEqual([{ kind: "fill", mount: "/", mib: 14 * 1024 }]);
    expect(formatDecision(disk, guestOf(disk, { zero: linux }))).toContain(
      "zero fill → fill / with 14 GiB of zeros, leaving fill_reserve 2 GiB free",
    );
    const volume = { ...filesystem, mount: "C:" };
    const windows = decideZero("web01", [volume], "fill", { kind: "bytes", bytes: 2 * GiB }, {}, "windows");
    expect(formatDecision(disk, guestOf(disk, { zero: windows }))).toContain(
      "zero fill → fill C: with 16 GiB of zeros, sdelete -z keeps no reserve",
    );
  });

  it("are left out of a plan saved before they were recorded, and of an image not on the host", () => {
    const { decidedBy: _, ...old } = decided(policy);
    expect(formatDecision(old, guestOf(old))).toEqual([
      "(the policy values are not in this plan: it was made by an earlier reclaim)",
    ]);
    const absent = decided(policy, bloatedDisk({ stat: { exists: false } }));
    expect(formatDecision(absent, guestOf(absent))).toEqual([
      "(no policy value applies: the image is not on this host)",
    ]);
  });

  it("appear in the plan only with --diff", () => {
    const disk = decided(policy);
    const plan = buildPlan(
      [
        {
          host: "kvm01",
          plays: [0],
          guests: [
            {
              host: "kvm01",
              guest: "web01",
              play: "p",
              playIndex: 0,
              pinned: true,
              notes: [],
              disks: [disk],
            },
          ],
        },
      ],
      new Date(0),
    );
    expect(formatPlan(plan)).not.toMatch(/decided by:/);
    expect(formatPlan(plan, { diff: true })).toMatch(
      /^ {6}decided by:\n {8}min_reclaimable 256 MiB: would give back ~3 GiB, enough\n/m,
    );
  });
});

describe("the plan's total line", () => {
  it("bounds the downtime of guests shut down by their shutdown_timeout and names the bytes their rewrites convert", () => {
    const held = (guest: string, allocated: number, timeoutMs: number) => {
      const facts = bloatedDisk({ path: `/images/${guest}.qcow2`, inUse: { message: "locked" } });
      if (facts.stat.exists) facts.stat.allocated = allocated;
      const disk = decideDisk({
        host: "kvm01",
        guest,
        policy: { ...policy, shutdown: "graceful", shutdownTimeoutMs: timeoutMs },
        facts,
        guestStops: true,
      });
      return {
        host: "kvm01",
        guest,
        play: "p",
        playIndex: 0,
        pinned: true,
        notes: [],
        vm: { ...running, canShutDown: true, shutdown: true, timeoutMs },
        disks: [disk],
      };
    };
    const plan = buildPlan(
      [{ host: "kvm01", plays: [0], guests: [held("a", 4 * GiB, 300_000), held("b", 6 * GiB, 90_000)] }],
      new Date(0),
    );
    expect(formatTotals(plan)).toBe(
      "Plan: 2 disks to rewrite, 0 ok, 0 skipped, ~8 GiB to reclaim (estimated from qemu-img measure, an upper bound of the new sizes: often more comes back); 2 guests to shut down and start again (each down for its shutdown, at most 90 s–5 min, then while its images are converted and verified: 10 GiB in all, no time estimated: that depends on the storage).",
    );
  });
});
