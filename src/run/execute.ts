/**
 * Carries out a plan the way Ansible runs plays: one play after another; within a play, its hosts
 * in batches (`serial`), each batch's hosts in parallel (up to `forks`), and on each host up to
 * `max_parallel_per_host` disks at once. A play stops early once more than `max_fail_percentage`
 * of its hosts failed. Each guest and disk goes its own way from there (run-guest.ts, run-disk.ts).
 */
import type { Play, ReclaimPolicy, Serial } from "../config/model.js";
import type { DiskPlan, GuestPlan, HostPlan, Plan } from "../plan/plan.js";
import type { RewriteHints } from "../tasks/rewrite-image.js";
import type { VmOutcome } from "../tasks/vm-lifecycle.js";
import type { Transport } from "../transport/transport.js";
import { limiter, mapLimit } from "./concurrency.js";
import type { EmitEvent } from "./events.js";
import { recapHosts } from "./recap.js";
import type { DiskResult, GuestZeroResult, RunResult, VmActionResult } from "./results.js";
import { executeDisk, recheckDisk, skipped } from "./run-disk.js";
import { executeGuestZero, executeVm, runGuest } from "./run-guest.js";

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
  /** How long to wait for a disk another runner is working on (default 5 min). */
  lockWaitMs?: number;
  /** Who this runner is, written into the locks it holds (default user@host pid N since …). */
  lockOwner?: string;
}

/** How one disk is carried out; replaceable so the scheduling can be tested on its own. */
export type RunDisk = (
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
  hints?: RewriteHints,
) => Promise<DiskResult>;

/** Decides a disk again from fresh facts, without acting: whether a shutdown is worth it. */
export type RecheckDisk = (
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
  hints: RewriteHints,
) => Promise<DiskPlan>;

/** Shuts a guest down or starts it again; replaceable likewise. */
export type RunVm = (
  action: "shutdown" | "start",
  host: string,
  guest: GuestPlan,
  options: ExecuteOptions,
) => Promise<VmOutcome>;

/** How one guest's blocks are freed; replaceable likewise. */
export type RunGuestZero = (
  host: string,
  guest: GuestPlan,
  options: ExecuteOptions,
) => Promise<GuestZeroResult>;

export interface Runners {
  disk: RunDisk;
  recheck: RecheckDisk;
  guestZero: RunGuestZero;
  vm: RunVm;
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
    recheck: runners.recheck ?? recheckDisk,
    guestZero: runners.guestZero ?? executeGuestZero,
    vm: runners.vm ?? executeVm,
  };
  const started = performance.now();
  const { plan, emit } = options;
  emit({ type: "run-start", plan });
  const disks: DiskResult[] = [];
  const guests: GuestZeroResult[] = [];
  const vms: VmActionResult[] = [];
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
        vms.push(...done.vms);
        disks.push(...done.disks);
      }
      failedHosts += perHost.filter(
        (r) =>
          r.disks.some((d) => d.status === "failed") ||
          r.guests.some((g) => !g.ok) ||
          r.vms.some((v) => !v.ok),
      ).length;
      const limit = play.maxFailPercentage;
      if (limit !== undefined && (failedHosts * 100) / hosts.length > limit) {
        stopped = `play '${play.name}' stopped: ${failedHosts} of ${hosts.length} hosts failed, more than max_fail_percentage ${limit}%`;
      }
    }
  }
  const result: RunResult = {
    guests,
    vms,
    disks,
    hosts: recapHosts(plan, disks, { guests, vms }),
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

/** Disks of one host worked on at the same time, whatever max_parallel_per_host asks. */
export const MAX_DISKS_AT_ONCE_PER_HOST = 4;

export interface HostOutcome {
  guests: GuestZeroResult[];
  vms: VmActionResult[];
  disks: DiskResult[];
}

/**
 * One host's share of a play: its guests, up to `parallel` at once; no more than `parallel` disks
 * of the host are rewritten at the same time, whichever guests they belong to.
 */
async function runHost(
  host: HostPlan,
  playIndex: number,
  parallel: number,
  options: ExecuteOptions,
  run: Runners,
): Promise<HostOutcome> {
  const transport = options.transports.get(host.host);
  const mine = host.guests.filter((g) => g.playIndex === playIndex);
  if (!transport) return { guests: [], vms: [], disks: [] };
  // Each disk being worked on holds two SSH channels (its lock, and one step at a time) out of the
  // connection's 8: more than 4 at once would leave steps waiting on channels held by locks.
  const slot = limiter(Math.min(parallel, MAX_DISKS_AT_ONCE_PER_HOST));
  const done = await mapLimit(mine, parallel, (guest) =>
    runGuest(host.host, guest, transport, slot, options, run),
  );
  return {
    guests: done.flatMap((d) => d.guests),
    vms: done.flatMap((d) => d.vms),
    disks: done.flatMap((d) => d.disks),
  };
}

function notStarted(host: HostPlan, playIndex: number, reason: string, emit: EmitEvent): DiskResult[] {
  return host.guests
    .filter((g) => g.playIndex === playIndex)
    .flatMap((g) => g.disks.map((d) => skipped(d, reason, emit)));
}
