/**
 * The heart of the planner, pure: from one disk's facts and its policy, what to do and why.
 * Every refusal names the hazard it avoids, so the user can act on it.
 */
import type { ReclaimPolicy } from "../config/model.js";
import { formatBytes, formatRatio } from "../config/units.js";
import type { DiskFacts } from "../facts/disk.js";
import { qcow2CreateOptions } from "../image/create-options.js";
import { identityOf, type Journal, parseJournal, sameIdentity } from "../image/journal.js";
import { imagePaths } from "../image/paths.js";
import type { DecidingPolicy, DiskPlan, Step } from "./plan.js";

/** Room kept free on the host filesystem beyond what the new image needs. */
export function freeSpaceMargin(required: number): number {
  return Math.max(64 * 1024 * 1024, Math.ceil(required * 0.02));
}

export interface DiskInput {
  host: string;
  guest: string;
  policy: ReclaimPolicy;
  facts: DiskFacts;
  /**
   * The image is locked by its own guest, which will be shut down before the rewrite: decide as if
   * it were free (apply checks the lock again once the guest is off).
   */
  guestStops?: boolean;
  /** Why a locked image stays locked (shutdown: never, no way to stop the guest), for the skip reason. */
  whyRunning?: string;
  /** Zeros a fill just wrote inside the guest: measure counts them as data, a rewrite drops them. */
  zerosWritten?: number;
}

/** What to do with one disk and why, with the policy values it was decided under. */
export function decideDisk(input: DiskInput): DiskPlan {
  const plan = decideAction(input);
  return { ...(resumeDetached(plan, input.facts) ?? plan), decidedBy: decidingPolicy(input.policy) };
}

/**
 * A conversion an interrupted run left running detached on the host (or finished there) is taken
 * over instead of being thrown away, when it was made from this very image and a rewrite is still
 * what the policy wants. Otherwise its files are leftovers like any other: stopped and removed.
 */
function resumeDetached(plan: DiskPlan, facts: DiskFacts): DiskPlan | undefined {
  const worker = facts.worker;
  if (plan.action !== "rewrite" || !plan.convert || !worker || !facts.stat.exists) return undefined;
  const running = worker.state === "running";
  const finished = worker.state === "exited" && worker.code === 0 && !facts.tempInUse;
  if (!(running || finished) || !facts.temp.exists || !facts.journal.exists) return undefined;
  const journal = parseJournal(facts.journal.text);
  if ("unreadable" in journal || journal.phase !== "converting") return undefined;
  if (!sameIdentity(identityOf(facts.stat), journal.original)) return undefined;
  const keepBackup = journal.backup !== undefined;
  const steps = rewriteSteps(imagePaths(facts.path).temp, keepBackup).filter((s) => s.kind !== "convert");
  if (running) {
    steps.unshift({
      kind: "convert",
      description: "reattach to the conversion an interrupted run left running on the host",
    });
  }
  return {
    ...plan,
    action: "finish",
    reason: running
      ? "an interrupted run's conversion still runs on the host: wait for it, verify, swap"
      : "an interrupted run's conversion finished on the host: verify it, swap",
    convert: { ...plan.convert, keepBackup, ...(running ? { reattach: true } : {}) },
    steps,
    leftovers: [],
    ...(journal.backup ? { backup: journal.backup } : {}),
  };
}

function decideAction({
  host,
  guest,
  policy,
  facts,
  guestStops = false,
  whyRunning,
  zerosWritten = 0,
}: DiskInput): DiskPlan {
  const base = { host, guest, path: facts.path, leftovers: [] as string[] };
  const skip = (reason: string, extra: Partial<DiskPlan> = {}): DiskPlan => ({
    ...base,
    action: "skip",
    reason,
    steps: [],
    ...extra,
  });
  const paths = imagePaths(facts.path);
  const stat = facts.stat;

  if (facts.tempInUse && facts.worker?.state !== "running")
    return skip("another process is rewriting this image now (its temporary image is locked)");
  // A stat that failed (not a missing file: that is a fact) says nothing about the image.
  if (!stat.exists && facts.error) return skip(`cannot read the image: ${facts.error}`);
  if (!stat.exists) return skip("no such file on this host", { absent: true });
  if (stat.type === "symlink")
    return skip(
      "is a symbolic link: name the image's real path, so the rewrite replaces the image and not the link",
    );
  if (stat.type !== "file") return skip(`is a ${stat.type}, not an image file`);

  const identity = identityOf(stat);
  const journal = facts.journal.exists ? parseJournal(facts.journal.text) : undefined;

  // An earlier run that got as far as a verified copy: finish it, or tidy up after a finished swap.
  if (journal && !("unreadable" in journal) && journal.phase === "verified" && journal.converted) {
    if (sameIdentity(identity, journal.converted) && !facts.temp.exists) {
      return {
        ...base,
        action: "cleanup",
        reason: "an earlier run already replaced this image; its journal is removed",
        steps: [finishStep()],
        identity,
        leftovers: [paths.journal],
      };
    }
    if (
      facts.temp.exists &&
      sameIdentity(identityOf(facts.temp), journal.converted) &&
      sameIdentity(identity, journal.original) &&
      !facts.inUse
    ) {
      return finishPlan(base, journal, identity);
    }
  }
  const leftovers = [
    facts.temp.exists ? paths.temp : undefined,
    facts.journal.exists ? paths.journal : undefined,
    // A detached conversion's files; a worker still running is stopped before they go.
    ...(facts.worker ? [paths.convertLog, paths.convertExit] : []),
  ].filter((p): p is string => p !== undefined);
  const withLeftovers = (plan: DiskPlan): DiskPlan => {
    if (leftovers.length === 0) return plan;
    if (plan.action === "rewrite") {
      return { ...plan, leftovers, steps: [removeLeftoversStep(leftovers), ...plan.steps] };
    }
    return {
      ...plan,
      action: "cleanup",
      reason: `${plan.reason}; leftovers of an interrupted run are removed`,
      leftovers,
      steps: [removeLeftoversStep(leftovers)],
    };
  };

  if (facts.error) return withLeftovers(skip(`cannot read the image: ${facts.error}`, { identity }));
  const info = facts.info;
  if (!info) return withLeftovers(skip("cannot read the image", { identity }));
  const described = {
    identity,
    virtualSize: info.virtualSize,
    ...(facts.inUse ? { inUse: true } : {}),
    ...(facts.inUse && guestStops ? { afterShutdown: true } : {}),
  };
  if (facts.inUse && !guestStops)
    return withLeftovers(
      skip(
        `in use by a running process (${facts.inUse.message}); a running VM's image is never rewritten${whyRunning ? ` (${whyRunning})` : ""}`,
        described,
      ),
    );
  if (facts.overlays)
    return withLeftovers(
      skip(
        `is the backing file of ${facts.overlays.join(", ")}: a VM on it would keep reading the old copy, and the space would not come back until it stops`,
        described,
      ),
    );
  if (stat.links > 1)
    return withLeftovers(skip(`has ${stat.links} hard links; a rewrite would split them`, described));
  if (info.format !== "qcow2")
    return withLeftovers(
      skip(
        `format ${info.format}: only qcow2 images are rewritten (the VM's definition names the format)`,
        described,
      ),
    );
  if (info.encrypted)
    return withLeftovers(
      skip("is encrypted: a rewrite without the key would come out unencrypted", described),
    );
  if (info.snapshots.length > 0)
    return withLeftovers(
      skip(`has internal snapshots (${info.snapshots.join(", ")}), which a rewrite would drop`, described),
    );
  if (info.backingFile)
    return withLeftovers(
      skip(`has a backing file (${info.backingFile}); a rewrite would flatten the chain`, described),
    );
  if (info.externalDataFile)
    return withLeftovers(skip(`keeps its data in an external file (${info.externalDataFile})`, described));
  if (info.corrupt)
    return withLeftovers(skip("is marked corrupt: repair it with qemu-img check -r first", described));
  if (info.dirty)
    return withLeftovers(
      skip(
        "has its dirty flag set (lazy refcounts after a crash): run qemu-img check -r leaks first",
        described,
      ),
    );
  if (!facts.measure) return withLeftovers(skip("cannot measure the image", described));

  const measured = facts.measure.required + facts.measure.bitmaps;
  // The zeros a fill wrote are clusters measure counts and convert skips. Never below the
  // metadata and bitmaps, which stay.
  const after = Math.max(facts.measure.bitmaps, measured - zerosWritten);
  const before = stat.allocated;
  const reclaim = Math.max(0, before - after);
  const estimate = {
    allocatedBefore: before,
    allocatedAfter: Math.min(after, before),
    reclaim,
    method:
      zerosWritten > 0
        ? `qemu-img measure, less the ${formatBytes(zerosWritten)} of zeros the guest-side fill wrote; other zeros stored as data count as data, so the result may be smaller`
        : "qemu-img measure: clusters the image allocates now; zeros stored as data count as data, so the result may be smaller",
  };
  const ratio = before === 0 ? 0 : reclaim / before;
  if (reclaim < policy.minReclaimableBytes || ratio < policy.minRatio) {
    const why =
      reclaim < policy.minReclaimableBytes
        ? `below min_reclaimable ${formatBytes(policy.minReclaimableBytes)}`
        : `below min_ratio ${formatRatio(policy.minRatio)}`;
    return withLeftovers({
      ...base,
      ...described,
      action: "ok",
      reason: `would give back ~${formatBytes(reclaim)} (${formatRatio(ratio)}), ${why}`,
      steps: [],
      estimate,
    });
  }
  const needed = after + freeSpaceMargin(after);
  if (facts.free && facts.free.availableBytes + reclaimableByLeftovers(facts) < needed) {
    return withLeftovers(
      skip(
        `not enough free space in ${paths.dir}: the new image needs up to ${formatBytes(needed)} (with margin), ${formatBytes(facts.free.availableBytes)} is free`,
        { ...described, estimate },
      ),
    );
  }
  const convert = {
    sourceFormat: info.format,
    targetFormat: "qcow2" as const,
    options: qcow2CreateOptions(info.options),
    bitmaps: info.bitmaps.length > 0,
    compress: policy.convert.compress,
    keepBackup: policy.convert.keepBackup,
  };
  return withLeftovers({
    ...base,
    ...described,
    action: "rewrite",
    reason: `would give back ~${formatBytes(reclaim)} (${formatRatio(ratio)})${facts.inUse ? ", once its guest is shut down" : ""}`,
    estimate,
    convert,
    steps: rewriteSteps(paths.temp, convert.keepBackup),
  });
}

/** The values of the policy that can decide a disk, as plain data for the plan. */
function decidingPolicy(policy: ReclaimPolicy): DecidingPolicy {
  return {
    minReclaimableBytes: policy.minReclaimableBytes,
    minRatio: policy.minRatio,
    zero: policy.zero,
    fillReserve: { ...policy.fillReserve },
    shutdown: policy.shutdown,
    shutdownTimeoutMs: policy.shutdownTimeoutMs,
    compress: policy.convert.compress,
    keepBackup: policy.convert.keepBackup,
  };
}

function finishPlan(
  base: { host: string; guest: string; path: string; leftovers: string[] },
  journal: Journal,
  identity: DiskPlan["identity"],
): DiskPlan {
  const steps: Step[] = [];
  if (journal.backup)
    steps.push({ kind: "keep-backup", description: "keep the original as a hard link beside it" });
  steps.push(swapStep(), finishStep());
  return {
    ...base,
    action: "finish",
    reason: "an interrupted run left a verified rewrite; only the swap is left",
    steps,
    ...(identity ? { identity } : {}),
    ...(journal.backup ? { backup: journal.backup } : {}),
  };
}

function rewriteSteps(temp: string, keepBackup: boolean): Step[] {
  return [
    { kind: "convert", description: `qemu-img convert into ${temp}` },
    {
      kind: "copy-attributes",
      description: "copy owner, group, mode and extended attributes from the original",
    },
    { kind: "flush", description: "flush the new image to disk (convert itself does not)" },
    {
      kind: "verify",
      description: "qemu-img compare with the original, qemu-img check, same size and options",
    },
    ...(keepBackup
      ? [{ kind: "keep-backup" as const, description: "keep the original as a hard link beside it" }]
      : []),
    swapStep(),
    finishStep(),
  ];
}

function swapStep(): Step {
  return {
    kind: "swap",
    description: "check the image is not in use, then rename the new image over it atomically",
  };
}

function finishStep(): Step {
  return { kind: "finish-journal", description: "flush the directory and remove the journal" };
}

function removeLeftoversStep(leftovers: readonly string[]): Step {
  return {
    kind: "remove-leftovers",
    description: `remove leftovers of an interrupted run: ${leftovers.join(", ")}`,
  };
}

/** A stale temporary image is removed before converting, so its space counts as free. */
function reclaimableByLeftovers(facts: DiskFacts): number {
  return facts.temp.exists ? facts.temp.allocated : 0;
}
