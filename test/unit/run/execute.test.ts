import { describe, expect, it } from "vitest";
import type { Play } from "../../../src/config/model.js";
import type { DiskPlan, HostPlan, Plan } from "../../../src/plan/plan.js";
import { batches, executePlan, type RunDisk } from "../../../src/run/execute.js";
import type { DiskResult } from "../../../src/run/results.js";
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
