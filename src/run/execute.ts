/**
 * Carries out a plan the way Ansible runs plays: one play after another; within a play, its hosts
 * in batches (`serial`), each batch's hosts in parallel (up to `forks`), and on each host up to
 * `max_parallel_per_host` disks at once. A play stops early once more than `max_fail_percentage`
 * of its hosts failed. Each disk is checked again right before it is touched, so apply acts on the
 * facts as they are now, not as they were when the plan was shown.
 */
import type { Play, ReclaimPolicy, Serial } from "../config/model.js";
import { gather } from "../facts/fact.js";
import { fileStat } from "../facts/file-stat.js";
import type { DiskPlan, GuestPlan, GuestZeroPlan, HostPlan, Plan } from "../plan/plan.js";
import { applyRewrite, checkRewrite } from "../tasks/rewrite-image.js";
import { applyZeroGuest } from "../tasks/zero-guest.js";
import type { Transport } from "../transport/transport.js";
import { mapLimit } from "./concurrency.js";
import type { EmitEvent } from "./events.js";
import { recapHosts } from "./recap.js";
import type { DiskResult, GuestZeroResult, RunResult } from "./results.js";

export interface ExecuteOptions {
  plan: Plan;
  /** The plays the plan was made from, in the same order as each guest's playIndex. */
  plays: readonly Pick<Play, "name" | "serial" | "maxFailPercentage" | "policy">[];
  transports: ReadonlyMap<string, Transport>;
  /** Connections to guests whose blocks are freed first, by `host\0guest`. */
  guestTransports?: ReadonlyMap<string, Transport>;
  /** The policy each planned disk was decided with, by `host\0path`. */
  policies: ReadonlyMap<string, ReclaimPolicy>;
  emit: EmitEvent;
  forks: number;
  signal?: AbortSignal;
  now?: () => Date;
}

/** How one disk is carried out; replaceable so the scheduling can be tested on its own. */
export type RunDisk = (
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
) => Promise<DiskResult>;

/** How one guest's blocks are freed; replaceable likewise. */
export type RunGuestZero = (
  host: string,
  guest: GuestPlan,
  options: ExecuteOptions,
) => Promise<GuestZeroResult>;

export interface Runners {
  disk: RunDisk;
  guestZero: RunGuestZero;
}

export function policyKey(host: string, path: string): string {
  return `${host}\0${path}`;
}

export async function executePlan(
  options: ExecuteOptions,
  runners: Partial<Runners> = {},
): Promise<RunResult> {
  const run: Runners = {
    disk: runners.disk ?? executeDisk,
    guestZero: runners.guestZero ?? executeGuestZero,
  };
  const started = performance.now();
  const { plan, emit } = options;
  emit({ type: "run-start", plan });
  const disks: DiskResult[] = [];
  const guests: GuestZeroResult[] = [];
  for (const [playIndex, play] of options.plays.entries()) {
    const hosts = plan.hosts.filter((h) => h.plays.includes(playIndex));
    let failedHosts = hosts.filter((h) => h.unreachable).length;
    let stopped: string | undefined;
    for (const batch of batches(hosts, play.serial)) {
      const reason = stopped ?? (options.signal?.aborted ? "interrupted before it started" : undefined);
      if (reason) {
        for (const host of batch) disks.push(...notStarted(host, playIndex, reason, emit));
        continue;
      }
      const perHost = await mapLimit(
        batch.filter((h) => !h.unreachable),
        options.forks,
        (host) => runHost(host, playIndex, play.policy.maxParallelPerHost, options, run),
      );
      for (const done of perHost) {
        guests.push(...done.guests);
        disks.push(...done.disks);
      }
      failedHosts += perHost.filter(
        (r) => r.disks.some((d) => d.status === "failed") || r.guests.some((g) => !g.ok),
      ).length;
      const limit = play.maxFailPercentage;
      if (limit !== undefined && (failedHosts * 100) / hosts.length > limit) {
        stopped = `play '${play.name}' stopped: ${failedHosts} of ${hosts.length} hosts failed, more than max_fail_percentage ${limit}%`;
      }
    }
  }
  const result: RunResult = {
    guests,
    disks,
    hosts: recapHosts(plan, disks),
    durationMs: performance.now() - started,
  };
  emit({ type: "run-end", result });
  return result;
}

/** Ansible's serial: batch sizes from a count or a share (at least one host per batch). */
export function batches<T>(hosts: readonly T[], serial: Serial | undefined): T[][] {
  const size =
    serial === undefined
      ? hosts.length
      : serial.kind === "count"
        ? serial.count
        : Math.max(1, Math.floor(hosts.length * serial.ratio));
  const out: T[][] = [];
  for (let i = 0; i < hosts.length; i += Math.max(1, size)) out.push(hosts.slice(i, i + Math.max(1, size)));
  return out;
}

/**
 * One host's share of a play: first the blocks inside each guest are freed (the guest-side steps),
 * then the host rewrites the disks, up to `parallel` at once.
 */
async function runHost(
  host: HostPlan,
  playIndex: number,
  parallel: number,
  options: ExecuteOptions,
  run: Runners,
): Promise<{ guests: GuestZeroResult[]; disks: DiskResult[] }> {
  const transport = options.transports.get(host.host);
  const mine = host.guests.filter((g) => g.playIndex === playIndex);
  if (!transport) return { guests: [], disks: [] };
  const guests: GuestZeroResult[] = [];
  for (const guest of mine) {
    if (guest.zero && !options.signal?.aborted) guests.push(await run.guestZero(host.host, guest, options));
  }
  const disks = await mapLimit(
    mine.flatMap((g) => g.disks),
    parallel,
    async (disk) => {
      if (options.signal?.aborted) return skipped(disk, "interrupted before it started", options.emit);
      return run.disk(disk, transport, options);
    },
  );
  return { guests, disks };
}

async function executeGuestZero(
  host: string,
  guest: GuestPlan,
  options: ExecuteOptions,
): Promise<GuestZeroResult> {
  const started = performance.now();
  const plan = guest.zero as GuestZeroPlan;
  const transport = options.guestTransports?.get(`${host}\0${guest.name}`);
  options.emit({ type: "guest-zero-start", host, guest: guest.name, plan });
  let result: GuestZeroResult;
  if (!transport) {
    result = {
      host,
      guest: guest.name,
      ok: false,
      message: "no connection to the guest",
      outcomes: [],
      durationMs: 0,
    };
  } else {
    try {
      const hypervisor = options.transports.get(host);
      const images = guest.disks.filter((d) => !d.absent).map((d) => d.path);
      // What the guest's images allocate on the host: how zero: auto sees whether a trim got through.
      const hostAllocated = hypervisor
        ? async () => {
            const stats = await Promise.all(images.map((path) => gather(hypervisor, fileStat, { path })));
            return stats.reduce((sum, st) => sum + (st.exists ? st.allocated : 0), 0);
          }
        : undefined;
      const outcomes = await applyZeroGuest(plan, transport, options.signal, hostAllocated);
      const failed = outcomes.filter((o) => !o.ok);
      // What went wrong when anything did; otherwise what was done everywhere.
      const message = (failed.length ? failed : outcomes).map((o) => `${o.mount}: ${o.message}`).join("; ");
      result = {
        host,
        guest: guest.name,
        ok: failed.length === 0,
        message,
        outcomes,
        durationMs: performance.now() - started,
      };
    } catch (error) {
      result = {
        host,
        guest: guest.name,
        ok: false,
        message: (error as Error).message,
        outcomes: [],
        durationMs: performance.now() - started,
      };
    }
  }
  options.emit({ type: "guest-zero-end", result });
  return result;
}

function notStarted(host: HostPlan, playIndex: number, reason: string, emit: EmitEvent): DiskResult[] {
  return host.guests
    .filter((g) => g.playIndex === playIndex)
    .flatMap((g) => g.disks.map((d) => skipped(d, reason, emit)));
}

function skipped(disk: DiskPlan, reason: string, emit: EmitEvent): DiskResult {
  const result: DiskResult = {
    host: disk.host,
    guest: disk.guest,
    path: disk.path,
    action: disk.action,
    status: "skipped",
    message: reason,
    steps: [],
    durationMs: 0,
    ...(disk.estimate ? { estimate: disk.estimate, allocatedBefore: disk.estimate.allocatedBefore } : {}),
  };
  emit({ type: "disk-end", result });
  return result;
}

async function executeDisk(
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
): Promise<DiskResult> {
  const disk = { host: planned.host, guest: planned.guest, path: planned.path };
  const policy = options.policies.get(policyKey(planned.host, planned.path));
  let current = planned;
  if (policy && planned.action !== "ok" && planned.action !== "skip") {
    try {
      current = await checkRewrite(transport, { ...disk, policy });
    } catch (error) {
      current = {
        ...planned,
        action: "skip",
        reason: `facts could not be read again: ${(error as Error).message}`,
        steps: [],
      };
    }
  }
  options.emit({ type: "disk-start", disk, plan: current });
  const result = await applyRewrite(current, {
    transport,
    emit: options.emit,
    now: options.now ?? (() => new Date()),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (current.action !== planned.action) {
    result.message = `planned ${planned.action}, but at apply time: ${result.message}`;
  }
  options.emit({ type: "disk-end", result });
  return result;
}
