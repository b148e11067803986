/**
 * Carries out a plan the way Ansible runs plays: one play after another; within a play, its hosts
 * in batches (`serial`), each batch's hosts in parallel (up to `forks`), and on each host up to
 * `max_parallel_per_host` disks at once. A play stops early once more than `max_fail_percentage`
 * of its hosts failed. Each disk is checked again right before it is touched, so apply acts on the
 * facts as they are now, not as they were when the plan was shown.
 */
import type { Play, ReclaimPolicy, Serial } from "../config/model.js";
import type { DiskPlan, HostPlan, Plan } from "../plan/plan.js";
import { applyRewrite, checkRewrite } from "../tasks/rewrite-image.js";
import type { Transport } from "../transport/transport.js";
import { mapLimit } from "./concurrency.js";
import type { EmitEvent } from "./events.js";
import { recapHosts } from "./recap.js";
import type { DiskResult, RunResult } from "./results.js";

export interface ExecuteOptions {
  plan: Plan;
  /** The plays the plan was made from, in the same order as each guest's playIndex. */
  plays: readonly Pick<Play, "name" | "serial" | "maxFailPercentage" | "policy">[];
  transports: ReadonlyMap<string, Transport>;
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

export function policyKey(host: string, path: string): string {
  return `${host}\0${path}`;
}

export async function executePlan(
  options: ExecuteOptions,
  runDisk: RunDisk = executeDisk,
): Promise<RunResult> {
  const started = performance.now();
  const { plan, emit } = options;
  emit({ type: "run-start", plan });
  const disks: DiskResult[] = [];
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
        (host) => runHost(host, playIndex, play.policy.maxParallelPerHost, options, runDisk),
      );
      disks.push(...perHost.flat());
      failedHosts += perHost.filter((results) => results.some((d) => d.status === "failed")).length;
      const limit = play.maxFailPercentage;
      if (limit !== undefined && (failedHosts * 100) / hosts.length > limit) {
        stopped = `play '${play.name}' stopped: ${failedHosts} of ${hosts.length} hosts failed, more than max_fail_percentage ${limit}%`;
      }
    }
  }
  const result: RunResult = {
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

async function runHost(
  host: HostPlan,
  playIndex: number,
  parallel: number,
  options: ExecuteOptions,
  runDisk: RunDisk,
): Promise<DiskResult[]> {
  const transport = options.transports.get(host.host);
  const planned = host.guests.filter((g) => g.playIndex === playIndex).flatMap((g) => g.disks);
  if (!transport) return [];
  return mapLimit(planned, parallel, async (disk) => {
    if (options.signal?.aborted) return skipped(disk, "interrupted before it started", options.emit);
    return runDisk(disk, transport, options);
  });
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
