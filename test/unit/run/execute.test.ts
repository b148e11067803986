import { describe, expect, it } from "vitest";
import type { Play } from "../../../src/config/model.js";
import type {
  DiskPlan,
  GuestPlan,
  GuestVmPlan,
  GuestZeroPlan,
  HostPlan,
  Plan,
} from "../../../src/plan/plan.js";
import { exitCodeOf } from "../../../src/report/exit-code.js";
import { batches, executePlan, type RunDisk, type Runners } from "../../../src/run/execute.js";
import type { DiskResult } from "../../../src/run/results.js";
import type { RewriteHints } from "../../../src/tasks/rewrite-image.js";
import type { VmOutcome } from "../../../src/tasks/vm-lifecycle.js";
import type { Transport } from "../../../src/transport/transport.js";
import { policy } from "../../helpers/facts.js";

type PlayShape = Pick<Play, "name" | "serial" | "maxFailPercentage" | "policy">;

function disk(host: string, path: string): DiskPlan {
  return { host, guest: "vm", path, action: "rewrite", reason: "", steps: [], leftovers: [] };
}

function planOf(hosts: { name: string; disks: number; plays?: number[]; unreachable?: boolean }[]): Plan {
  const hostPlans: HostPlan[] = hosts.map((h) => {
    const plays = h.plays ?? [0];
    return {
      host: h.name,
      plays,
      ...(h.unreachable ? { unreachable: "down" } : {}),
      guests: h.unreachable
        ? []
        : plays.map((p) => ({
            name: "vm",
            play: `play${p}`,
            playIndex: p,
            notes: [],
            disks: Array.from({ length: h.disks }, (_, i) => disk(h.name, `/p${p}/d${i}.qcow2`)),
          })),
    };
  });
  return {
    version: 1,
    createdAt: "",
    hosts: hostPlans,
    totals: { disksToRewrite: 0, disksOk: 0, disksSkipped: 0, estimatedReclaim: 0 },
  };
}

const fakeTransport = (host: string): Transport => ({
  host,
  run: () => Promise.reject(new Error("unused")),
  close: async () => {},
});

/** Records when each disk ran; `fail` names the hosts whose disks fail. */
function recorder(fail: readonly string[] = []) {
  const log: { key: string; start: number; end: number }[] = [];
  let clock = 0;
  let running = 0;
  let maxRunning = 0;
  const runDisk: RunDisk = async (planned) => {
    const start = clock++;
    running += 1;
    maxRunning = Math.max(maxRunning, running);
    await new Promise((r) => setTimeout(r, 5));
    running -= 1;
    log.push({ key: `${planned.host}${planned.path}`, start, end: clock++ });
    const status = fail.includes(planned.host) ? "failed" : "changed";
    return {
      host: planned.host,
      guest: planned.guest,
      path: planned.path,
      action: planned.action,
      status,
      message: status,
      steps: [],
      durationMs: 0,
    } as DiskResult;
  };
  return { runDisk, log, maxRunning: () => maxRunning };
}

async function run(plan: Plan, plays: PlayShape[], runDisk: RunDisk, forks = 10) {
  const transports = new Map(plan.hosts.map((h) => [h.host, fakeTransport(h.host)]));
  return executePlan(
    { plan, plays, transports, policies: new Map(), emit: () => {}, forks },
    { disk: runDisk },
  );
}

const play = (extra: Partial<PlayShape> = {}): PlayShape => ({ name: "p", policy, ...extra });

describe("scheduling the work of a plan", () => {
  it("splits hosts into batches by count or share, at least one host each", () => {
    expect(batches([1, 2, 3, 4, 5], { kind: "count", count: 2 })).toEqual([[1, 2], [3, 4], [5]]);
    expect(batches([1, 2, 3, 4], { kind: "ratio", ratio: 0.5 })).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(batches([1, 2, 3], { kind: "ratio", ratio: 0.1 })).toEqual([[1], [2], [3]]);
    expect(batches([1, 2, 3], undefined)).toEqual([[1, 2, 3]]);
  });

  it("finishes one serial batch before the next begins", async () => {
    const r = recorder();
    await run(
      planOf(["a", "b", "c", "d"].map((name) => ({ name, disks: 1 }))),
      [play({ serial: { kind: "count", count: 2 } })],
      r.runDisk,
    );
    const at = (h: string) => r.log.find((e) => e.key.startsWith(h)) as { start: number; end: number };
    expect(Math.min(at("c").start, at("d").start)).toBeGreaterThan(Math.max(at("a").end, at("b").end));
  });

  it("rewrites the disks of one host one at a time by default, more when the policy allows", async () => {
    const one = recorder();
    await run(planOf([{ name: "a", disks: 4 }]), [play()], one.runDisk);
    expect(one.maxRunning()).toBe(1);
    const two = recorder();
    await run(
      planOf([{ name: "a", disks: 4 }]),
      [play({ policy: { ...policy, maxParallelPerHost: 2 } })],
      two.runDisk,
    );
    expect(two.maxRunning()).toBe(2);
  });

  it("never works on more than 4 disks of one host at once: each holds a lock channel and a step channel", async () => {
    const r = recorder();
    await run(
      planOf([{ name: "a", disks: 10 }]),
      [play({ policy: { ...policy, maxParallelPerHost: 8 } })],
      r.runDisk,
    );
    expect(r.maxRunning()).toBe(4);
  });

  it("works on hosts in parallel up to forks", async () => {
    const r = recorder();
    await run(planOf(["a", "b", "c", "d"].map((name) => ({ name, disks: 1 }))), [play()], r.runDisk, 3);
    expect(r.maxRunning()).toBe(3);
  });

  it("stops a play once more than max_fail_percentage of its hosts failed, and says so for the rest", async () => {
    const r = recorder(["a"]);
    const result = await run(
      planOf(["a", "b", "c", "d"].map((name) => ({ name, disks: 1 }))),
      [play({ name: "nightly", serial: { kind: "count", count: 1 }, maxFailPercentage: 20 })],
      r.runDisk,
    );
    expect(r.log.map((e) => e.key)).toEqual(["a/p0/d0.qcow2"]);
    expect(result.disks.map((d) => d.status)).toEqual(["failed", "skipped", "skipped", "skipped"]);
    expect(result.disks[1]?.message).toBe(
      "play 'nightly' stopped: 1 of 4 hosts failed, more than max_fail_percentage 20%",
    );
  });

  it("counts an unreachable host as failed for max_fail_percentage", async () => {
    const r = recorder();
    const result = await run(
      planOf([
        { name: "down", disks: 1, unreachable: true },
        { name: "b", disks: 1 },
        { name: "c", disks: 1 },
      ]),
      [play({ serial: { kind: "count", count: 1 }, maxFailPercentage: 30 })],
      r.runDisk,
    );
    expect(r.log).toEqual([]);
    expect(result.disks.map((d) => d.status)).toEqual(["skipped", "skipped"]);
  });

  it("runs plays one after another on every host", async () => {
    const r = recorder();
    await run(
      planOf(["a", "b"].map((name) => ({ name, disks: 1, plays: [0, 1] }))),
      [play(), play()],
      r.runDisk,
    );
    const first = r.log.filter((e) => e.key.includes("/p0/"));
    const second = r.log.filter((e) => e.key.includes("/p1/"));
    expect(Math.min(...second.map((e) => e.start))).toBeGreaterThan(Math.max(...first.map((e) => e.end)));
  });
});

describe("guest-side steps", () => {
  it("free each guest's blocks before the host touches that host's disks", async () => {
    const plan = planOf([{ name: "a", disks: 2 }]);
    const guest = plan.hosts[0]?.guests[0];
    if (!guest) throw new Error("no guest");
    guest.zero = {
      guest: "vm",
      mode: "trim",
      reserve: policy.fillReserve,
      filesystems: [],
      leftovers: [],
      steps: [{ kind: "trim", mount: "/" }],
      fillBytes: 0,
    };
    const order: string[] = [];
    const r = recorder();
    const result = await executePlan(
      {
        plan,
        plays: [play()],
        transports: new Map([["a", fakeTransport("a")]]),
        policies: new Map(),
        emit: () => {},
        forks: 1,
      },
      {
        guestZero: async (host, g) => {
          order.push(`zero ${host} ${g.name}`);
          return { host, guest: g.name, ok: true, message: "trimmed", outcomes: [], durationMs: 0 };
        },
        disk: async (planned, transport, options) => {
          order.push(`disk ${planned.path}`);
          return r.runDisk(planned, transport, options);
        },
      },
    );
    expect(order).toEqual(["zero a vm", "disk /p0/d0.qcow2", "disk /p0/d1.qcow2"]);
    expect(result.guests.map((g) => g.message)).toEqual(["trimmed"]);
  });

  it("counts a host whose guest step failed as failed for max_fail_percentage", async () => {
    const plan = planOf(["a", "b"].map((name) => ({ name, disks: 1 })));
    for (const h of plan.hosts) {
      const g = h.guests[0];
      if (g)
        g.zero = {
          guest: "vm",
          mode: "trim",
          reserve: policy.fillReserve,
          filesystems: [],
          leftovers: [],
          steps: [],
          fillBytes: 0,
        };
    }
    const r = recorder();
    const result = await run(
      plan,
      [play({ serial: { kind: "count", count: 1 }, maxFailPercentage: 10 })],
      r.runDisk,
    );
    // The default guest runner finds no guest connection here, so the guest step fails on host a.
    expect(result.guests.map((g) => g.ok)).toEqual([false]);
    expect(result.disks.map((d) => d.status)).toEqual(["changed", "skipped"]);
  });
});

describe("a guest shut down for its rewrites", () => {
  const HELD = "/images/web01.qcow2";
  const OTHER = "/images/web01-data.qcow2";
  const libvirtVm: GuestVmPlan = {
    manager: "libvirt",
    state: "running",
    canShutDown: true,
    shutdown: true,
    timeoutMs: 300_000,
    libvirtUri: "qemu:///system",
  };

  function held(path: string): DiskPlan {
    return { ...disk("kvm01", path), guest: "web01", reason: "planned", afterShutdown: true };
  }
  function free(path: string, extra: Partial<DiskPlan> = {}): DiskPlan {
    return { ...disk("kvm01", path), guest: "web01", reason: "planned", ...extra };
  }

  function planWith(guest: Partial<GuestPlan>): Plan {
    return {
      version: 1,
      createdAt: "",
      hosts: [
        {
          host: "kvm01",
          plays: [0],
          guests: [{ name: "web01", play: "p", playIndex: 0, notes: [], disks: [], ...guest }],
        },
      ],
      totals: { disksToRewrite: 0, disksOk: 0, disksSkipped: 0, estimatedReclaim: 0 },
    };
  }

  const zeroPlan = (): GuestZeroPlan => ({
    guest: "web01",
    mode: "fill",
    reserve: policy.fillReserve,
    filesystems: [],
    leftovers: [],
    steps: [{ kind: "fill", mount: "/", mib: 850 }],
    fillBytes: 850 * 1024 * 1024,
  });

  interface Script {
    recheck?: (planned: DiskPlan) => Partial<DiskPlan>;
    vm?: Partial<Record<"shutdown" | "start", VmOutcome>>;
    disk?: (planned: DiskPlan) => DiskResult["status"] | Error;
    filled?: number;
  }

  /** Runs the plan with recording runners; `log` is the order of everything they were asked. */
  async function runScripted(plan: Plan, script: Script = {}) {
    const log: string[] = [];
    const hints: Record<string, RewriteHints> = {};
    const events: string[] = [];
    const runners: Partial<Runners> = {
      guestZero: async (host, guest) => {
        log.push("zero");
        const bytes = script.filled ?? 0;
        return {
          host,
          guest: guest.name,
          ok: true,
          message: "done",
          outcomes: bytes ? [{ mount: "/", kind: "fill", ok: true, bytes, message: "wrote" }] : [],
          durationMs: 0,
        };
      },
      recheck: async (planned, _transport, _options, h) => {
        log.push(`recheck ${planned.path}`);
        hints[`recheck ${planned.path}`] = h;
        return { ...planned, reason: "rechecked", ...script.recheck?.(planned) };
      },
      vm: async (action) => {
        log.push(`vm ${action}`);
        return script.vm?.[action] ?? { ok: true, message: `${action} done` };
      },
      disk: async (planned, _transport, _options, h) => {
        log.push(`disk ${planned.path} (${planned.reason})`);
        hints[`disk ${planned.path}`] = h ?? {};
        const status = script.disk?.(planned) ?? "changed";
        if (status instanceof Error) throw status;
        return {
          host: planned.host,
          guest: planned.guest,
          path: planned.path,
          action: planned.action,
          status,
          message: status,
          steps: [],
          durationMs: 0,
        };
      },
    };
    const result = await executePlan(
      {
        plan,
        plays: [play()],
        transports: new Map([["kvm01", fakeTransport("kvm01")]]),
        policies: new Map(),
        emit: (event) => {
          if (event.type === "vm-start") events.push(`vm-start ${event.action}: ${event.description}`);
          if (event.type === "vm-end") events.push(`vm-end ${event.result.action} ${event.result.ok}`);
        },
        forks: 1,
      },
      runners,
    );
    return { result, log, hints, events };
  }

  it("frees blocks, decides again, shuts down, rewrites, then starts the guest again, in that order", async () => {
    const { result, log, events } = await runScripted(
      planWith({ zero: zeroPlan(), vm: libvirtVm, disks: [held(HELD)] }),
    );
    expect(log).toEqual(["zero", `recheck ${HELD}`, "vm shutdown", `disk ${HELD} (rechecked)`, "vm start"]);
    expect(result.vms.map((v) => [v.guest, v.action, v.manager, v.ok, v.message])).toEqual([
      ["web01", "shutdown", "libvirt", true, "shutdown done"],
      ["web01", "start", "libvirt", true, "start done"],
    ]);
    expect(events).toEqual([
      "vm-start shutdown: virsh shutdown",
      "vm-end shutdown true",
      "vm-start start: virsh start",
      "vm-end start true",
    ]);
    expect(exitCodeOf(result)).toBe(0);
  });

  it("rechecks only the held disks, as if the guest stopped, and rewrites the others with them", async () => {
    const { log, hints } = await runScripted(planWith({ vm: libvirtVm, disks: [held(HELD), free(OTHER)] }));
    expect(log).toEqual([
      `recheck ${HELD}`,
      "vm shutdown",
      `disk ${HELD} (rechecked)`,
      `disk ${OTHER} (planned)`,
      "vm start",
    ]);
    expect(hints[`recheck ${HELD}`]).toEqual({ guestStops: true });
    expect(hints[`disk ${HELD}`]).toEqual({});
  });

  it("keeps the guest running when the recheck finds nothing worth its shutdown", async () => {
    const { result, log } = await runScripted(
      planWith({ zero: zeroPlan(), vm: libvirtVm, disks: [held(HELD), free(OTHER)] }),
      {
        recheck: () => ({
          action: "ok",
          reason: "would give back ~10 MiB (1%), below min_reclaimable 256 MiB",
        }),
      },
    );
    expect(log).toEqual(["zero", `recheck ${HELD}`, `disk ${OTHER} (planned)`]);
    expect(result.vms).toEqual([]);
    expect(result.disks.map((d) => [d.path, d.status, d.message])).toEqual([
      [
        HELD,
        "ok",
        "would give back ~10 MiB (1%), below min_reclaimable 256 MiB; the guest keeps running (no rewrite is worth its shutdown)",
      ],
      [OTHER, "changed", "changed"],
    ]);
    expect(exitCodeOf(result)).toBe(0);
  });

  it("skips the held disks with the reason when the guest did not shut down, still rewriting its others", async () => {
    const failed = {
      ok: false,
      message: "did not shut down within 5.0 min (libvirt says running); not forced off",
    };
    const { result, log } = await runScripted(planWith({ vm: libvirtVm, disks: [held(HELD), free(OTHER)] }), {
      vm: { shutdown: failed },
    });
    expect(log).toEqual([`recheck ${HELD}`, "vm shutdown", `disk ${OTHER} (planned)`, "vm start"]);
    expect(result.disks.map((d) => [d.path, d.status, d.message])).toEqual([
      [HELD, "skipped", `the guest was not shut down: ${failed.message}`],
      [OTHER, "changed", "changed"],
    ]);
    expect(result.vms.map((v) => [v.action, v.ok])).toEqual([
      ["shutdown", false],
      ["start", true],
    ]);
    expect(exitCodeOf(result)).toBe(2);
  });

  it("does not try to start a guest managed from inside that never went down", async () => {
    const guestVm: GuestVmPlan = { ...libvirtVm, manager: "guest", poweroffCommand: ["poweroff"] };
    delete guestVm.libvirtUri;
    const { result, log, events } = await runScripted(planWith({ vm: guestVm, disks: [held(HELD)] }), {
      vm: { shutdown: { ok: false, message: "no connection to the guest to power it off from inside" } },
    });
    expect(log).toEqual([`recheck ${HELD}`, "vm shutdown"]);
    expect(events).toEqual(["vm-start shutdown: poweroff inside the guest", "vm-end shutdown false"]);
    expect(result.vms.map((v) => [v.action, v.manager, v.ok])).toEqual([["shutdown", "guest", false]]);
    expect(exitCodeOf(result)).toBe(2);
  });

  it("reports a shutdown runner that throws as a failed shutdown", async () => {
    const plan = planWith({ vm: libvirtVm, disks: [held(HELD)] });
    const log: string[] = [];
    const result = await executePlan(
      {
        plan,
        plays: [play()],
        transports: new Map([["kvm01", fakeTransport("kvm01")]]),
        policies: new Map(),
        emit: () => {},
        forks: 1,
      },
      {
        recheck: async (planned) => planned,
        vm: async (action) => {
          log.push(action);
          if (action === "shutdown") throw new Error("ssh connection lost");
          return { ok: true, message: "started" };
        },
        disk: async () => {
          throw new Error("must not run");
        },
      },
    );
    expect(log).toEqual(["shutdown", "start"]);
    expect(result.vms[0]).toMatchObject({ action: "shutdown", ok: false, message: "ssh connection lost" });
    expect(result.disks.map((d) => d.message)).toEqual(["the guest was not shut down: ssh connection lost"]);
  });

  it("starts the guest again when a rewrite failed", async () => {
    const { result, log } = await runScripted(planWith({ vm: libvirtVm, disks: [held(HELD)] }), {
      disk: () => "failed",
    });
    expect(log).toEqual([`recheck ${HELD}`, "vm shutdown", `disk ${HELD} (rechecked)`, "vm start"]);
    expect(result.disks.map((d) => d.status)).toEqual(["failed"]);
    expect(exitCodeOf(result)).toBe(2);
  });

  it("credits the guest-side steps in the recap: what the image allocated before the run, and after", async () => {
    const estimate = {
      allocatedBefore: 700 * 1024 * 1024,
      allocatedAfter: 700 * 1024 * 1024,
      reclaim: 0,
      method: "",
    };
    const plan = planWith({ zero: zeroPlan(), disks: [free(HELD, { action: "ok", estimate })] });
    const result = await executePlan(
      {
        plan,
        plays: [play()],
        transports: new Map([["kvm01", fakeTransport("kvm01")]]),
        policies: new Map(),
        emit: () => {},
        forks: 1,
      },
      {
        guestZero: async (host, guest) => ({
          host,
          guest: guest.name,
          ok: true,
          message: "",
          outcomes: [],
          durationMs: 0,
        }),
        // What the disk looks like after the trim: 100 MiB left, nothing worth a rewrite.
        disk: async (planned) => ({
          host: planned.host,
          guest: planned.guest,
          path: planned.path,
          action: "ok",
          status: "ok",
          message: "ok",
          steps: [],
          durationMs: 0,
          allocatedBefore: 100 * 1024 * 1024,
        }),
      },
    );
    expect(result.disks[0]).toMatchObject({
      allocatedBefore: 700 * 1024 * 1024,
      allocatedAfter: 100 * 1024 * 1024,
    });
    expect(result.hosts[0]?.reclaimed).toBe(600 * 1024 * 1024);
  });

  it("counts a failed shutdown as a failure of its host in the recap", async () => {
    const { result } = await runScripted(planWith({ vm: libvirtVm, disks: [held(HELD)] }), {
      vm: { shutdown: { ok: false, message: "did not shut down" } },
    });
    expect(result.hosts[0]).toMatchObject({ failed: 1, skipped: 1, changed: 0 });
  });

  it("starts a guest an interrupted run shut down, after its disks", async () => {
    const off = { ...libvirtVm, state: "shut off", canShutDown: false, shutdown: false, startAfter: true };
    const { log, result } = await runScripted(planWith({ vm: off, disks: [free(HELD)] }));
    expect(log).toEqual([`disk ${HELD} (planned)`, "vm start"]);
    expect(result.vms.map((v) => [v.action, v.ok])).toEqual([["start", true]]);
  });

  it("reports a disk whose runner threw as failed, and starts the guest only after all its disks", async () => {
    const other = "/images/web01-data.qcow2";
    const { log, result } = await runScripted(planWith({ vm: libvirtVm, disks: [held(HELD), held(other)] }), {
      disk: (planned) => (planned.path === HELD ? new Error("connection reset") : "changed"),
    });
    expect(log).toEqual([
      `recheck ${HELD}`,
      `recheck ${other}`,
      "vm shutdown",
      `disk ${HELD} (rechecked)`,
      `disk ${other} (rechecked)`,
      "vm start",
    ]);
    expect(result.disks.map((d) => [d.path, d.status, d.message])).toEqual([
      [HELD, "failed", "connection reset"],
      [other, "changed", "changed"],
    ]);
    expect(exitCodeOf(result)).toBe(2);
  });

  it("reports a start that failed, and exits with 2", async () => {
    const { result } = await runScripted(planWith({ vm: libvirtVm, disks: [held(HELD)] }), {
      vm: { start: { ok: false, message: "virsh start failed: virsh exited with 1" } },
    });
    expect(result.disks.map((d) => d.status)).toEqual(["changed"]);
    expect(result.vms.map((v) => [v.action, v.ok, v.message])).toEqual([
      ["shutdown", true, "shutdown done"],
      ["start", false, "virsh start failed: virsh exited with 1"],
    ]);
    expect(exitCodeOf(result)).toBe(2);
  });

  it("hands the fill's zeros to the recheck and the rewrite when the guest has one image", async () => {
    const { hints } = await runScripted(planWith({ zero: zeroPlan(), vm: libvirtVm, disks: [held(HELD)] }), {
      filled: 891289600,
    });
    expect(hints[`recheck ${HELD}`]).toEqual({
      zerosWritten: 891289600,
      afterGuestSteps: true,
      guestStops: true,
    });
    expect(hints[`disk ${HELD}`]).toEqual({ zerosWritten: 891289600, afterGuestSteps: true });
  });

  it("counts only the images present on the host when deciding the guest has one", async () => {
    const { hints } = await runScripted(
      planWith({ zero: zeroPlan(), disks: [free(HELD), free(OTHER, { action: "skip", absent: true })] }),
      { filled: 891289600 },
    );
    expect(hints[`disk ${HELD}`]).toEqual({ zerosWritten: 891289600, afterGuestSteps: true });
  });

  it("hands no zeros on when the guest has several images, since which one took them is unknown", async () => {
    const { hints } = await runScripted(
      planWith({ zero: zeroPlan(), vm: libvirtVm, disks: [held(HELD), free(OTHER)] }),
      { filled: 891289600 },
    );
    expect(hints[`recheck ${HELD}`]).toEqual({ afterGuestSteps: true, guestStops: true });
    expect(hints[`disk ${HELD}`]).toEqual({ afterGuestSteps: true });
    expect(hints[`disk ${OTHER}`]).toEqual({ afterGuestSteps: true });
  });

  it.each<[string, Partial<GuestPlan>]>([
    ["no vm plan", { disks: [free(HELD), free(OTHER)] }],
    [
      "a vm that may not be shut down",
      { vm: { ...libvirtVm, canShutDown: false }, disks: [held(HELD), free(OTHER)] },
    ],
    ["a vm but no disk waiting for its shutdown", { vm: libvirtVm, disks: [free(HELD), free(OTHER)] }],
  ])("neither rechecks nor stops or starts a guest with %s", async (_name, guest) => {
    const { result, log } = await runScripted(planWith(guest));
    expect(log).toEqual([`disk ${HELD} (planned)`, `disk ${OTHER} (planned)`]);
    expect(result.vms).toEqual([]);
  });
});
