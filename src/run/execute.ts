/**
 * Carries out a plan the way Ansible runs plays: one play after another; within a play, its hosts
 * in batches (`serial`), each batch's hosts in parallel (up to `forks`), and on each host up to
 * `max_parallel_per_host` disks at once. A play stops early once more than `max_fail_percentage`
 * of its hosts failed. Each disk is checked again right before it is touched, so apply acts on the
 * facts as they are now, not as they were when the plan was shown.
 */
import { hostname, userInfo } from "node:os";
import type { Play, ReclaimPolicy, Serial } from "../config/model.js";
import { gather } from "../facts/fact.js";
import { fileStat } from "../facts/file-stat.js";
import type { DiskPlan, GuestPlan, GuestVmPlan, GuestZeroPlan, HostPlan, Plan } from "../plan/plan.js";
import { acquireDiskLock, type DiskLock } from "../tasks/disk-lock.js";
import { applyRewrite, checkRewrite, type RewriteHints } from "../tasks/rewrite-image.js";
import { startVm, stopVm, type VmOutcome } from "../tasks/vm-lifecycle.js";
import { applyZeroGuest } from "../tasks/zero-guest.js";
import type { Transport } from "../transport/transport.js";
import { limiter, mapLimit } from "./concurrency.js";
import type { EmitEvent } from "./events.js";
import { recapHosts } from "./recap.js";
import type { DiskResult, GuestZeroResult, RunResult, VmActionResult } from "./results.js";

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

interface HostOutcome {
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
  const slot = limiter(parallel);
  const done = await mapLimit(mine, parallel, (guest) =>
    runGuest(host.host, guest, transport, slot, options, run),
  );
  return {
    guests: done.flatMap((d) => d.guests),
    vms: done.flatMap((d) => d.vms),
    disks: done.flatMap((d) => d.disks),
  };
}

/**
 * One guest: free the blocks inside it first; then, if it holds images worth rewriting and may be
 * stopped, shut it down, rewrite, and start it again (always, once a shutdown was asked for,
 * whatever became of the rewrites).
 */
async function runGuest(
  host: string,
  guest: GuestPlan,
  transport: Transport,
  slot: <T>(fn: () => Promise<T>) => Promise<T>,
  options: ExecuteOptions,
  run: Runners,
): Promise<HostOutcome> {
  const aborted = () => options.signal?.aborted === true;
  const out: HostOutcome = { guests: [], vms: [], disks: [] };
  const zero = guest.zero && !aborted() ? await run.guestZero(host, guest, options) : undefined;
  if (zero) out.guests.push(zero);
  const hints = hintsAfterZero(guest, zero);
  // What each image allocated before anything of this run: the recap credits the guest-side
  // steps too (a trim alone may have given everything back).
  const planned = new Map(guest.disks.map((d) => [d.path, d.estimate?.allocatedBefore]));
  const credit = (result: DiskResult): DiskResult => {
    const before = planned.get(result.path);
    if (!zero || before === undefined || result.allocatedBefore === undefined) return result;
    return {
      ...result,
      allocatedBefore: before,
      allocatedAfter: result.allocatedAfter ?? result.allocatedBefore,
    };
  };
  // Every disk ends with a result, even one whose runner threw: the guest is started again only
  // after all of its disks are done.
  const rewriteAll = (disks: readonly DiskPlan[]) =>
    mapLimit(disks, disks.length, (disk) =>
      slot(async () => {
        if (aborted()) return skipped(disk, "interrupted before it started", options.emit);
        try {
          return credit(await run.disk(disk, transport, options, hints));
        } catch (error) {
          return failed(disk, (error as Error).message, options.emit);
        }
      }),
    );

  const held = guest.disks.filter((d) => d.afterShutdown);
  const vm = guest.vm;
  if (!vm?.canShutDown || held.length === 0 || aborted()) {
    out.disks.push(...(await rewriteAll(guest.disks)));
    return out;
  }
  // After a fill the estimates change: decide again whether stopping the guest is worth it.
  const again = await Promise.all(
    held.map((d) => run.recheck(d, transport, options, { ...hints, guestStops: true })),
  );
  if (!again.some((d) => d.action === "rewrite" || d.action === "finish")) {
    const others = guest.disks.filter((d) => !d.afterShutdown);
    const kept = again.map((d) =>
      noteOnly(
        credit,
        d,
        `${d.reason}; the guest keeps running (no rewrite is worth its shutdown)`,
        options.emit,
      ),
    );
    out.disks.push(...kept, ...(await rewriteAll(others)));
    return out;
  }
  const stopped = await vmAction("shutdown", host, guest, vm, options, run);
  out.vms.push(stopped);
  try {
    if (!stopped.ok) {
      const others = guest.disks.filter((d) => !d.afterShutdown);
      out.disks.push(
        ...held.map((d) => skipped(d, `the guest was not shut down: ${stopped.message}`, options.emit)),
        ...(await rewriteAll(others)),
      );
    } else {
      // The disks as decided again, so a disk the fill made worth it is rewritten too.
      const decided = guest.disks.map((d) => again.find((a) => a.path === d.path) ?? d);
      out.disks.push(...(await rewriteAll(decided)));
    }
  } finally {
    // Started again whatever happened to the rewrites; a guest that never went down is left alone.
    if (stopped.ok || vm.manager === "libvirt")
      out.vms.push(await vmAction("start", host, guest, vm, options, run));
  }
  return out;
}

/** The zeros a fill wrote count against the estimate of a guest's only image. */
function hintsAfterZero(guest: GuestPlan, zero: GuestZeroResult | undefined): RewriteHints {
  const written = (zero?.outcomes ?? [])
    .filter((o) => o.kind === "fill")
    .reduce((sum, o) => sum + o.bytes, 0);
  // With several images, which one took the zeros is not known: their estimates stay upper bounds.
  const present = guest.disks.filter((d) => !d.absent);
  const hints: RewriteHints = written > 0 && present.length === 1 ? { zerosWritten: written } : {};
  return zero ? { ...hints, afterGuestSteps: true } : hints;
}

async function vmAction(
  action: VmActionResult["action"],
  host: string,
  guest: GuestPlan,
  vm: GuestVmPlan,
  options: ExecuteOptions,
  run: Runners,
): Promise<VmActionResult> {
  const started = performance.now();
  const how =
    vm.manager === "libvirt"
      ? `virsh ${action}`
      : action === "shutdown"
        ? `${(vm.poweroffCommand ?? ["poweroff"]).join(" ")} inside the guest`
        : (vm.startCommand?.join(" ") ?? "no start_command");
  options.emit({ type: "vm-start", host, guest: guest.name, action, description: how });
  let outcome: VmOutcome;
  try {
    outcome = await run.vm(action, host, guest, options);
  } catch (error) {
    outcome = { ok: false, message: (error as Error).message };
  }
  const result: VmActionResult = {
    host,
    guest: guest.name,
    action,
    manager: vm.manager,
    ok: outcome.ok,
    message: outcome.message,
    ...(outcome.idle ? { idle: true } : {}),
    durationMs: performance.now() - started,
  };
  options.emit({ type: "vm-end", result });
  return result;
}

async function executeVm(
  action: "shutdown" | "start",
  host: string,
  guest: GuestPlan,
  options: ExecuteOptions,
): Promise<VmOutcome> {
  const hypervisor = options.transports.get(host);
  if (!hypervisor || !guest.vm) return { ok: false, message: "no connection to the hypervisor" };
  const guestTransport = options.guestTransports?.get(`${host}\0${guest.name}`);
  const target = {
    guest: guest.name,
    plan: guest.vm,
    images: guest.disks.filter((d) => !d.absent).map((d) => d.path),
    hypervisor,
    ...(guestTransport ? { guestTransport } : {}),
    // Starting again must not be cut short by the Ctrl-C that interrupted the rewrite.
    ...(options.signal && action === "shutdown" ? { signal: options.signal } : {}),
  };
  return action === "shutdown" ? stopVm(target) : startVm(target);
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

async function recheckDisk(
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
  hints: RewriteHints,
): Promise<DiskPlan> {
  const policy = options.policies.get(policyKey(planned.host, planned.path));
  if (!policy) return planned;
  try {
    return await checkRewrite(
      transport,
      { host: planned.host, guest: planned.guest, path: planned.path, policy },
      hints,
    );
  } catch (error) {
    return {
      ...planned,
      action: "skip",
      reason: `facts could not be read again: ${(error as Error).message}`,
      steps: [],
    };
  }
}

function failed(disk: DiskPlan, message: string, emit: EmitEvent): DiskResult {
  const result: DiskResult = { ...skipped(disk, message, () => {}), status: "failed" };
  emit({ type: "disk-end", result });
  return result;
}

/** A disk decided again and left as it is: reported without acting. */
function noteOnly(
  credit: (r: DiskResult) => DiskResult,
  disk: DiskPlan,
  message: string,
  emit: EmitEvent,
): DiskResult {
  const result = credit({
    ...skipped(disk, message, () => {}),
    status: disk.action === "ok" ? "ok" : "skipped",
  });
  emit({ type: "disk-end", result });
  return result;
}

async function executeDisk(
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
  hints: RewriteHints = {},
): Promise<DiskResult> {
  const policy = options.policies.get(policyKey(planned.host, planned.path));
  // A disk planned as ok may be worth rewriting after a fill, and its allocation after a trim is
  // news for the recap; a skipped one stays skipped.
  const fresh = planned.action !== "skip" && (planned.action !== "ok" || hints.afterGuestSteps === true);
  // One runner per disk: the facts are read again, and the disk changed, under its lock.
  const lock = policy && fresh ? await lockDisk(planned, transport, options) : undefined;
  if (lock && !lock.held) {
    const result = skipped(planned, lock.reason, () => {});
    options.emit({ type: "disk-end", result });
    return result;
  }
  try {
    return await checkAndApply(planned, transport, options, hints, policy && fresh ? policy : undefined);
  } finally {
    if (lock?.held) await lock.release();
  }
}

async function lockDisk(planned: DiskPlan, transport: Transport, options: ExecuteOptions): Promise<DiskLock> {
  try {
    return await acquireDiskLock(transport, planned.path, {
      waitMs: options.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS,
      owner: options.lockOwner ?? defaultLockOwner(options.now),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    return { held: false, reason: `cannot take this disk's lock: ${(error as Error).message}` };
  }
}

const DEFAULT_LOCK_WAIT_MS = 5 * 60_000;

function defaultLockOwner(now: (() => Date) | undefined): string {
  return `reclaim ${userInfo().username}@${hostname()} pid ${process.pid} since ${(now ?? (() => new Date()))().toISOString()}`;
}

async function checkAndApply(
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
  hints: RewriteHints,
  policy: ReclaimPolicy | undefined,
): Promise<DiskResult> {
  const disk = { host: planned.host, guest: planned.guest, path: planned.path };
  let current = planned;
  if (policy) {
    try {
      current = await checkRewrite(transport, { ...disk, policy }, hints);
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
