/**
 * Carries out a plan: hosts in parallel (up to `forks`), the disks of one host one after another.
 * Each disk is checked again right before it is touched, so apply acts on the facts as they are
 * now, not as they were when the plan was shown.
 */
import type { ReclaimPolicy } from "../config/model.js";
import type { DiskPlan, Plan } from "../plan/plan.js";
import { applyRewrite, checkRewrite } from "../tasks/rewrite-image.js";
import type { Transport } from "../transport/transport.js";
import { mapLimit } from "./concurrency.js";
import type { EmitEvent } from "./events.js";
import { recapHosts } from "./recap.js";
import type { DiskResult, RunResult } from "./results.js";

export interface ExecuteOptions {
  plan: Plan;
  transports: ReadonlyMap<string, Transport>;
  /** The policy each planned disk was decided with, by `host\0path`. */
  policies: ReadonlyMap<string, ReclaimPolicy>;
  emit: EmitEvent;
  forks: number;
  signal?: AbortSignal;
  now?: () => Date;
}

export function policyKey(host: string, path: string): string {
  return `${host}\0${path}`;
}

export async function executePlan(options: ExecuteOptions): Promise<RunResult> {
  const started = performance.now();
  const { plan, emit } = options;
  emit({ type: "run-start", plan });
  const perHost = await mapLimit(plan.hosts, options.forks, async (hostPlan) => {
    const transport = options.transports.get(hostPlan.host);
    const results: DiskResult[] = [];
    if (!transport || hostPlan.unreachable) return results;
    for (const guest of hostPlan.guests) {
      for (const planned of guest.disks) {
        if (options.signal?.aborted) break;
        results.push(await executeDisk(planned, transport, options));
      }
    }
    return results;
  });
  const disks = perHost.flat();
  const result: RunResult = {
    disks,
    hosts: recapHosts(plan, disks),
    durationMs: performance.now() - started,
  };
  emit({ type: "run-end", result });
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
