import { describe, expect, it } from "vitest";
import type { DiskPlan, GuestPlan, Plan } from "../../../src/plan/plan.js";
import { planToApply, type SavedPlan, staleness } from "../../../src/plan/saved.js";

const identity = { device: 1, inode: 7, size: 1000, mtimeSec: 100 };
const disk = (extra: Partial<DiskPlan> = {}): DiskPlan => ({
  host: "kvm",
  guest: "web01",
  path: "/images/web01.qcow2",
  action: "rewrite",
  reason: "",
  steps: [],
  leftovers: [],
  identity,
  ...extra,
});
const guest = (extra: Partial<GuestPlan> = {}): GuestPlan => ({
  name: "web01",
  play: "p",
  playIndex: 0,
  notes: [],
  disks: [disk()],
  ...extra,
});
const plan = (g: GuestPlan): Plan => ({
  version: 1,
  createdAt: "",
  hosts: [{ host: "kvm", plays: [0], guests: [g] }],
  totals: { disksToRewrite: 1, disksOk: 0, disksSkipped: 0, estimatedReclaim: 0 },
});
const files = { playbooks: [{ path: "pb.yml", sha256: "aa" }] };
const saved = (g: GuestPlan): SavedPlan => ({
  format: "reclaim-saved-plan",
  version: 1,
  tool: { name: "reclaim", version: "0" },
  ...files,
  options: {},
  plan: plan(g),
});

describe("a saved plan going stale", () => {
  it("is fresh when nothing it was made from changed", () => {
    expect(staleness(saved(guest()), files, plan(guest()))).toEqual([]);
  });

  it("names a size change and a modification of an image that was not in use", () => {
    const now = guest({ disks: [disk({ identity: { ...identity, size: 2048, mtimeSec: 200 } })] });
    expect(staleness(saved(guest()), files, plan(now))).toEqual([
      "/images/web01.qcow2 changed since the plan was made: size 1000 B → 2 KiB, modified since",
    ]);
  });

  it("ignores the writes of a running guest to its image, but not another file in its place", () => {
    const running = guest({ disks: [disk({ inUse: true })] });
    const written = guest({
      disks: [disk({ inUse: true, identity: { ...identity, size: 4096, mtimeSec: 300 } })],
    });
    expect(staleness(saved(running), files, plan(written))).toEqual([]);
    const replaced = guest({ disks: [disk({ inUse: true, identity: { ...identity, inode: 8 } })] });
    expect(staleness(saved(running), files, plan(replaced))[0]).toMatch(/it is another file/);
  });

  it("names a guest whose VM changed state, and changed guest-side steps", () => {
    const vm = {
      manager: "libvirt" as const,
      state: "running",
      canShutDown: true,
      shutdown: true,
      timeoutMs: 1,
    };
    const zero = (kind: "trim" | "fill") => ({
      guest: "web01",
      mode: "auto" as const,
      reserve: { kind: "ratio" as const, ratio: 0.05 },
      filesystems: [],
      leftovers: [],
      steps: [kind === "trim" ? { kind, mount: "/" } : { kind, mount: "/", mib: 10 }],
      fillBytes: 0,
    });
    const then = guest({ vm, zero: zero("trim") });
    const now = guest({ vm: { ...vm, state: "shut off" }, zero: zero("fill") });
    expect(staleness(saved(then), files, plan(now))).toEqual([
      "guest web01 on kvm was running, now shut off",
      "guest web01 on kvm: the guest-side steps would now be fill / (planned: trim /)",
    ]);
  });

  it("names a changed playbook and a guest that is new", () => {
    const now = plan(guest());
    now.hosts[0]?.guests.push(guest({ name: "web02" }));
    expect(staleness(saved(guest()), { playbooks: [{ path: "pb.yml", sha256: "bb" }] }, now)).toEqual([
      "the playbook pb.yml changed since the plan was made",
      "guest web02 on kvm was not in the plan",
    ]);
  });

  it("never fills more than the guest's free space allows now", () => {
    const fill = (mib: number) => ({
      guest: "web01",
      mode: "fill" as const,
      reserve: { kind: "ratio" as const, ratio: 0.05 },
      filesystems: [],
      leftovers: [],
      steps: [{ kind: "fill" as const, mount: "/", mib }],
      fillBytes: mib * 1024 * 1024,
    });
    const applied = planToApply(saved(guest({ zero: fill(800) })), plan(guest({ zero: fill(500) })));
    expect(applied.hosts[0]?.guests[0]?.zero?.steps).toEqual([{ kind: "fill", mount: "/", mib: 500 }]);
    const more = planToApply(saved(guest({ zero: fill(500) })), plan(guest({ zero: fill(800) })));
    expect(more.hosts[0]?.guests[0]?.zero?.steps).toEqual([{ kind: "fill", mount: "/", mib: 500 }]);
  });
});
