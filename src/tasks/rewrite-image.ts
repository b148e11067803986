/**
 * The host-side task: rewrite one image with `qemu-img convert`, verified before it replaces the
 * original. `checkRewrite` only reads; `applyRewrite` carries out exactly the plan it is given.
 *
 * Safety protocol: the original is never opened for writing. The new image is made beside it,
 * made durable, verified and journaled before one atomic rename puts it in place. Any failure
 * before the rename removes the new image; a kill leaves the journal for the next run.
 */
import type { ReclaimPolicy } from "../config/model.js";
import { type DiskFacts, gatherDisksFacts } from "../facts/disk.js";
import { gather } from "../facts/fact.js";
import { fileStat } from "../facts/file-stat.js";
import { fsFree } from "../facts/fs-free.js";
import { imageInfoShared, imageProbe } from "../facts/image-info.js";
import { identityOf, type Journal, sameIdentity } from "../image/journal.js";
import { backupPath, imagePaths } from "../image/paths.js";
import { decideDisk } from "../plan/decide-disk.js";
import type { DiskPlan, Step } from "../plan/plan.js";
import type { EmitEvent } from "../run/events.js";
import type { DiskResult, DiskStatus, StepResult } from "../run/results.js";
import {
  type CommandResult,
  type CommandSpec,
  describeFailure,
  type Transport,
} from "../transport/transport.js";
import { convertFailureMessage } from "./convert-failure.js";
import {
  parseWatchEnd,
  startWorkerArgv,
  stopWorkerArgv,
  WORKER_BUSY_EXIT,
  type WorkerFiles,
  watchWorkerArgv,
  workerFileNames,
  workerFilesOf,
  workerTailArgv,
} from "./convert-worker.js";
import * as cmd from "./host-commands.js";

export interface RewriteTarget {
  host: string;
  guest: string;
  path: string;
  policy: ReclaimPolicy;
}

/** What the run learned before this disk that the facts alone do not show. */
export interface RewriteHints {
  /** Zeros a guest-side fill just wrote into the image (stored as data until the rewrite). */
  zerosWritten?: number;
  /** The image's lock is its own guest's, which will be shut down first. */
  guestStops?: boolean;
  /** Guest-side steps ran before: the facts of a disk planned as ok are read again. */
  afterGuestSteps?: boolean;
}

export interface TaskContext {
  transport: Transport;
  emit: EmitEvent;
  signal?: AbortSignal;
  now: () => Date;
}

/** Read-only: gathers the disk's facts and decides. */
export async function checkRewrite(
  transport: Transport,
  target: RewriteTarget,
  hints: RewriteHints = {},
): Promise<DiskPlan> {
  const [facts] = await gatherDisksFacts(transport, [target.path]);
  return decideDisk({ ...target, facts: facts as DiskFacts, ...hints });
}

class StepFailed extends Error {}

/**
 * The conversion goes on, detached on the host, but this run lost sight of it (its connection
 * dropped): nothing is removed, the next run (or this one, reconnected) takes it over.
 */
class ConversionDetached extends StepFailed {}

/** Another worker converts this image: its files are not ours to remove. */
class ConversionBusy extends StepFailed {}

const FACT_TIMEOUT_MS = 60_000;

/** Carries out a disk's plan step by step and reports what happened as data. */
export async function applyRewrite(plan: DiskPlan, ctx: TaskContext): Promise<DiskResult> {
  const started = performance.now();
  const disk = { host: plan.host, guest: plan.guest, path: plan.path };
  const steps: StepResult[] = [];
  const result = (status: DiskStatus, message: string, extra: Partial<DiskResult> = {}): DiskResult => ({
    ...disk,
    action: plan.action,
    status,
    message,
    steps,
    durationMs: performance.now() - started,
    ...(plan.estimate ? { estimate: plan.estimate, allocatedBefore: plan.estimate.allocatedBefore } : {}),
    ...extra,
  });
  if (plan.action === "ok") return result("ok", plan.reason);
  if (plan.action === "skip") return result("skipped", plan.reason);

  const paths = imagePaths(plan.path);
  const run = (spec: CommandSpec): Promise<CommandResult> =>
    ctx.transport.run(ctx.signal ? { ...spec, signal: ctx.signal } : spec);
  const must = async (argv: string[], extra: Partial<CommandSpec> = {}): Promise<CommandResult> => {
    const r = await run({ argv, ...extra });
    if (r.exitCode !== 0 || r.timedOut) throw new StepFailed(describeFailure(r));
    return r;
  };
  const backup = plan.backup ?? (plan.convert?.keepBackup ? backupPath(plan.path, ctx.now()) : undefined);
  const journal: Journal | undefined = plan.identity
    ? {
        version: 1,
        image: plan.path,
        temp: paths.temp,
        phase: "converting",
        original: plan.identity,
        ...(backup ? { backup } : {}),
        startedAt: ctx.now().toISOString(),
      }
    : undefined;
  const writeJournal = (j: Journal) =>
    must(cmd.writeFileAtomicArgv(paths.journal), { stdin: `${JSON.stringify(j)}\n` });
  let swapped = plan.action === "cleanup";
  const worker = workerFilesOf(paths);

  const doStep = async (step: Step): Promise<string | undefined> => {
    switch (step.kind) {
      case "remove-leftovers": {
        const workerLeft = plan.leftovers.includes(worker.log);
        if (workerLeft) await must(stopWorkerArgv(worker), { timeoutMs: 60_000 });
        // A worker's half-written status is named by no plan: it goes with the worker's files.
        const files = workerLeft
          ? [...new Set([...plan.leftovers, ...workerFileNames(worker)])]
          : plan.leftovers;
        await must(cmd.removeArgv(files));
        await must(cmd.fsyncArgv(paths.dir));
        return undefined;
      }
      case "convert": {
        if (!plan.convert || !journal) throw new StepFailed("the plan has no conversion details");
        if (!plan.convert.reattach) {
          await writeJournal(journal);
          const started = await run({
            argv: startWorkerArgv(worker, cmd.convertArgv(plan.convert, plan.path, paths.temp)),
            timeoutMs: FACT_TIMEOUT_MS,
          });
          if (started.exitCode === WORKER_BUSY_EXIT) throw new ConversionBusy(describeFailure(started));
          if (started.exitCode !== 0 || started.timedOut) throw new StepFailed(describeFailure(started));
        }
        await watchConversion(worker, ctx, { dir: paths.dir, estimate: plan.estimate }, (percent) =>
          ctx.emit({ type: "step-progress", disk, step: "convert", percent }),
        );
        return plan.convert.reattach ? "reattached to the conversion left running" : undefined;
      }
      case "copy-attributes":
        await must(cmd.copyAttributesArgv(plan.path, paths.temp));
        return undefined;
      case "flush":
        await must(cmd.fsyncArgv(paths.temp));
        return undefined;
      case "verify":
        return verify(plan, paths.temp, ctx.transport, async (converted) => {
          if (journal) await writeJournal({ ...journal, phase: "verified", converted });
        });
      case "keep-backup":
        if (!backup) throw new StepFailed("no backup path");
        await must(cmd.keepBackupArgv(plan.path, backup));
        return `original kept as ${backup}`;
      case "swap":
        await checkStillSafe(plan, ctx.transport);
        await must(cmd.renameArgv(paths.temp, plan.path));
        swapped = true;
        return undefined;
      case "finish-journal":
        await must(cmd.fsyncArgv(paths.dir));
        // The journal goes last: until it does, a re-run knows this rewrite was ours.
        await must(cmd.removeArgv(workerFileNames(worker)));
        await must(cmd.removeArgv([paths.journal]));
        await must(cmd.fsyncArgv(paths.dir));
        return undefined;
    }
  };

  for (const step of plan.steps) {
    const stepStarted = performance.now();
    ctx.emit({ type: "step-start", disk, step: step.kind, description: step.description });
    try {
      const message = await doStep(step);
      const durationMs = performance.now() - stepStarted;
      steps.push({ kind: step.kind, ok: true, durationMs, ...(message ? { message } : {}) });
      ctx.emit({
        type: "step-end",
        disk,
        step: step.kind,
        ok: true,
        durationMs,
        ...(message ? { message } : {}),
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const durationMs = performance.now() - stepStarted;
      steps.push({ kind: step.kind, ok: false, durationMs, message });
      ctx.emit({ type: "step-end", disk, step: step.kind, ok: false, durationMs, message });
      const leftRunning = error instanceof ConversionDetached || error instanceof ConversionBusy;
      if (!swapped && !leftRunning) await discardRewrite(ctx.transport, paths);
      const outcome = swapped
        ? "the new image is in place"
        : error instanceof ConversionDetached
          ? "the original is untouched; the conversion continues on the host and the next run finishes it"
          : "the original is untouched";
      return result("failed", `${step.kind} failed: ${message} (${outcome})`, {
        ...(error instanceof ConversionDetached ? { detached: true } : {}),
      });
    }
  }
  const after = await gather(ctx.transport, fileStat, { path: plan.path }, FACT_TIMEOUT_MS);
  const allocatedAfter = after.exists ? after.allocated : undefined;
  const summary =
    plan.action === "cleanup"
      ? plan.reason
      : plan.action === "finish"
        ? "finished an interrupted rewrite"
        : "rewritten and verified";
  return result("changed", summary, allocatedAfter === undefined ? {} : { allocatedAfter });
}

async function verify(
  plan: DiskPlan,
  temp: string,
  transport: Transport,
  recordVerified: (converted: ReturnType<typeof identityOf>) => Promise<void>,
): Promise<string> {
  const spec = plan.convert;
  if (!spec) throw new StepFailed("the plan has no conversion details");
  const compare = await transport.run({ argv: cmd.compareArgv(spec.sourceFormat, plan.path, temp) });
  if (compare.exitCode === 1)
    throw new StepFailed(`the new image differs from the original: ${compare.stdout.trim()}`);
  if (compare.exitCode !== 0) throw new StepFailed(describeFailure(compare));
  const check = await transport.run({ argv: cmd.checkArgv(spec.targetFormat, temp) });
  if (check.exitCode !== 0)
    throw new StepFailed(`qemu-img check of the new image: ${describeFailure(check)}`);
  const [original, converted] = await Promise.all([
    gather(transport, imageInfoShared, { path: plan.path }),
    gather(transport, imageInfoShared, { path: temp }),
  ]);
  if (original.virtualSize !== converted.virtualSize) {
    throw new StepFailed(`virtual size changed: ${original.virtualSize} → ${converted.virtualSize}`);
  }
  for (const key of Object.keys(original.options) as (keyof typeof original.options)[]) {
    if (original.options[key] !== converted.options[key]) {
      throw new StepFailed(
        `image option ${key} changed: ${String(original.options[key])} → ${String(converted.options[key])}`,
      );
    }
  }
  if (original.bitmaps.join() !== converted.bitmaps.join())
    throw new StepFailed("persistent bitmaps were not carried over");
  const stat = await gather(transport, fileStat, { path: temp });
  if (!stat.exists) throw new StepFailed("the new image vanished");
  await recordVerified(identityOf(stat));
  return "identical content; image check clean";
}

/** Right before the swap: the original must be the one we copied, and nothing may hold it. */
async function checkStillSafe(plan: DiskPlan, transport: Transport): Promise<void> {
  const [stat, probe] = await Promise.all([
    gather(transport, fileStat, { path: plan.path }),
    gather(transport, imageProbe, { path: plan.path }),
  ]);
  if (probe.inUse) throw new StepFailed(`the image came into use (${probe.lockMessage}); not replaced`);
  if (!stat.exists || !plan.identity || !sameIdentity(identityOf(stat), plan.identity)) {
    throw new StepFailed("the image changed since it was copied; not replaced");
  }
}

/**
 * Follows the detached conversion to its end. Cancelled, it stops the worker; its connection
 * lost, it leaves the worker running and says so.
 */
async function watchConversion(
  worker: WorkerFiles,
  ctx: TaskContext,
  where: { dir: string; estimate: DiskPlan["estimate"] },
  onPercent: (percent: number) => void,
): Promise<void> {
  let watched: CommandResult;
  try {
    watched = await ctx.transport.run({
      argv: watchWorkerArgv(worker),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onStdout: (chunk) => {
        const percent = cmd.parseConvertProgress(chunk);
        if (percent !== undefined) onPercent(percent);
      },
    });
  } catch (error) {
    if (ctx.signal?.aborted) throw new StepFailed("cancelled");
    throw new ConversionDetached(`lost sight of the conversion: ${(error as Error).message}`);
  }
  const end = parseWatchEnd(watched.stdout);
  if (!end.ended) {
    if (ctx.signal?.aborted) throw new StepFailed("cancelled");
    throw new StepFailed(`following the conversion: ${describeFailure(watched)}`);
  }
  if (end.code === 0) return;
  // What qemu-img said last, and the room left (read before the temporary image is removed):
  // a conversion that filled the filesystem is told as such, with the numbers.
  const [tail, space] = await Promise.all([
    ctx.transport.run({ argv: workerTailArgv(worker), timeoutMs: FACT_TIMEOUT_MS }),
    gather(ctx.transport, fsFree, { dir: where.dir }).catch(() => undefined),
  ]);
  const outOfSpace = convertFailureMessage({
    stderr: tail.stdout,
    ...(space ? { space } : {}),
    ...(where.estimate ? { estimatedBytes: where.estimate.allocatedAfter } : {}),
  });
  if (outOfSpace) throw new StepFailed(outOfSpace);
  const detail = tail.stdout.trim().split("\n").join(" / ");
  throw new StepFailed(
    end.code === undefined
      ? `the conversion ended without an exit status (killed, or the host restarted)${detail ? `: ${detail}` : ""}`
      : `qemu-img convert exited with ${end.code}${detail ? `: ${detail}` : ""}`,
  );
}

/** Best effort: a failed rewrite leaves no worker, temporary image or journal behind. */
async function discardRewrite(transport: Transport, paths: ReturnType<typeof imagePaths>): Promise<void> {
  try {
    const worker = workerFilesOf(paths);
    await transport.run({ argv: stopWorkerArgv(worker), timeoutMs: FACT_TIMEOUT_MS });
    await transport.run({
      argv: cmd.removeArgv([paths.temp, paths.journal, ...workerFileNames(worker)]),
      timeoutMs: FACT_TIMEOUT_MS,
    });
  } catch {
    // The next run finds and removes them by name.
  }
}
