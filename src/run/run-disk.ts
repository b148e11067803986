/**
 * One disk at apply time: under its lock on the hypervisor, its facts read again and exactly what
 * they call for carried out; and the results of disks that are not touched.
 */
import { hostname, userInfo } from "node:os";
import type { ReclaimPolicy } from "../config/model.js";
import type { DiskPlan } from "../plan/plan.js";
import { acquireDiskLock, type DiskLock } from "../tasks/disk-lock.js";
import { applyRewrite, checkRewrite, type RewriteHints } from "../tasks/rewrite-image.js";
import type { Transport } from "../transport/transport.js";
import type { EmitEvent } from "./events.js";
import { type ExecuteOptions, policyKey } from "./execute.js";
import type { DiskResult } from "./results.js";
export async function executeDisk(
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
  hints: RewriteHints = {},
): Promise<DiskResult> {
  let result = await lockedAttempt(planned, transport, options, hints);
  // The connection dropped while the conversion went on, detached, on the host: once it is back
  // (the transport reconnects), take the disk's lock again and reattach, as a next run would.
  for (let retry = 1; result.detached && retry <= REATTACH_ATTEMPTS && !options.signal?.aborted; retry++) {
    const again = await lockedAttempt(planned, transport, options, hints);
    if (again.status === "skipped" && again.steps.length === 0) break;
    result = { ...again, message: `${again.message} (reattached after the connection was lost)` };
  }
  options.emit({ type: "disk-end", result });
  return result;
}

/** Reattaching after a lost connection: how many times, for one disk, before leaving it to the next run. */
const REATTACH_ATTEMPTS = 3;

async function lockedAttempt(
  planned: DiskPlan,
  transport: Transport,
  options: ExecuteOptions,
  hints: RewriteHints,
): Promise<DiskResult> {
  const policy = options.policies.get(policyKey(planned.host, planned.path));
  // A disk planned as ok may be worth rewriting after a fill, and its allocation after a trim is
  // news for the recap; a skipped one stays skipped.
  const fresh = planned.action !== "skip" && (planned.action !== "ok" || hints.afterGuestSteps === true);
  // One runner per disk: the facts are read again, and the disk changed, under its lock.
  const lock = policy && fresh ? await lockDisk(planned, transport, options) : undefined;
  if (lock && !lock.held) return skipped(planned, lock.reason, () => {});
  try {
    return await checkAndApply(planned, transport, options, hints, policy && fresh ? policy : undefined);
  } finally {
    if (lock?.held) await lock.release();
  }
}

export async function recheckDisk(
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
  return result;
}

export function skipped(disk: DiskPlan, reason: string, emit: EmitEvent): DiskResult {
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

export function failed(disk: DiskPlan, message: string, emit: EmitEvent): DiskResult {
  const result: DiskResult = { ...skipped(disk, message, () => {}), status: "failed" };
  emit({ type: "disk-end", result });
  return result;
}

/** A disk decided again and left as it is: reported without acting. */
export function noteOnly(
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
