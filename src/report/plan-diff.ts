/**
 * `--diff`: under each disk of the human plan, the policy values that decided it and how. Pure
 * formatting of the plan's own data (the disk's `decidedBy`, its estimate, its guest's VM and
 * guest-side plans), so a saved plan shows the same without the playbook at hand.
 */
import { formatBytes, formatRatio } from "../config/units.js";
import type { DecidingPolicy, DiskPlan, GuestPlan, ZeroStep } from "../plan/plan.js";

/** One line per policy value (or group of values), each saying what it decided for this disk. */
export function formatDecision(disk: DiskPlan, guest: GuestPlan): string[] {
  const policy = disk.decidedBy;
  if (!policy) return ["(the policy values are not in this plan: it was made by an earlier reclaim)"];
  if (disk.absent) return ["(no policy value applies: the image is not on this host)"];
  return [
    ...thresholds(disk, guest, policy),
    ...zero(guest, policy),
    shutdown(disk, guest, policy),
    ...convert(disk, policy),
  ];
}

function thresholds(disk: DiskPlan, guest: GuestPlan, policy: DecidingPolicy): string[] {
  const bytes = `min_reclaimable ${formatBytes(policy.minReclaimableBytes)}`;
  const share = `min_ratio ${exactPercent(policy.minRatio)}`;
  const e = disk.estimate;
  if (!e) {
    const why =
      disk.action === "finish"
        ? "only the swap of an interrupted run's verified rewrite is left"
        : disk.action === "cleanup"
          ? "only leftovers of an earlier run are removed"
          : "the disk was refused before it was measured (see why above)";
    return [`${bytes}, ${share}: not applied: ${why}`];
  }
  const ratio = e.allocatedBefore === 0 ? 0 : e.reclaim / e.allocatedBefore;
  const enoughBytes = e.reclaim >= policy.minReclaimableBytes;
  const enoughShare = ratio >= policy.minRatio;
  const guestSteps = guest.zero?.steps.some((s) => s.kind !== "skip") === true;
  // The first threshold the disk falls below decides; if it passes both, its action does.
  const decides = !enoughBytes ? "bytes" : !enoughShare ? "share" : "both";
  const outcome =
    decides !== "both"
      ? `too little → ok${guestSteps ? " for now: measured again after the guest-side steps" : ""}`
      : disk.action === "rewrite"
        ? "enough → rewrite"
        : `enough, but ${disk.action}: see why above`;
  const verdict = (enough: boolean, deciding: boolean) =>
    deciding ? outcome : enough ? "enough" : "too little";
  return [
    `${bytes}: would give back ~${formatBytes(e.reclaim)}, ${verdict(enoughBytes, decides === "bytes")}`,
    `${share}: ${formatRatio(ratio)} of the ${formatBytes(e.allocatedBefore)} it allocates, ${verdict(enoughShare, decides !== "bytes")}`,
  ];
}

function zero(guest: GuestPlan, policy: DecidingPolicy): string[] {
  const head = `zero ${policy.zero}`;
  if (policy.zero === "none") return [`${head}: nothing is freed inside the guest first`];
  const plan = guest.zero;
  if (!plan) return [`${head}: nothing runs inside the guest (see the guest's notes)`];
  if (plan.steps.length === 0) return [`${head}: the guest has no filesystem to trim or fill`];
  return plan.steps.map((step) => `${head} → ${zeroStep(step, policy, plan.os === "windows")}`);
}

function zeroStep(step: ZeroStep, policy: DecidingPolicy, windows: boolean): string {
  const auto = policy.zero === "auto";
  switch (step.kind) {
    case "trim":
      return `trim ${step.mount}${auto ? " (discard reaches the image)" : ""}`;
    case "fill": {
      const why = auto ? " (discard does not reach the image)" : "";
      const reserve = windows
        ? "sdelete -z keeps no reserve"
        : `leaving fill_reserve ${reserveText(policy.fillReserve)} free`;
      return `fill ${step.mount} with ${formatBytes(step.mib * 1024 * 1024)} of zeros${why}, ${reserve}`;
    }
    case "skip":
      return `leave ${step.mount} alone: ${step.reason}`;
  }
}

function shutdown(disk: DiskPlan, guest: GuestPlan, policy: DecidingPolicy): string {
  const head =
    policy.shutdown === "graceful"
      ? `shutdown graceful, shutdown_timeout ${durationText(policy.shutdownTimeoutMs)}`
      : "shutdown never";
  const vm = guest.vm;
  if (!disk.inUse) {
    return vm && !vm.canShutDown && vm.state !== "running"
      ? `${head}: the guest is ${vm.state} → no shutdown needed`
      : `${head}: no running guest held the image → no shutdown for it`;
  }
  if (disk.action === "skip" || (disk.action === "cleanup" && !disk.afterShutdown)) {
    if (policy.shutdown === "never") return `${head}: its running guest keeps the image locked → skip`;
    if (!disk.afterShutdown || !vm?.canShutDown)
      return `${head}: its running guest holds the image and is not shut down (see why above) → skip`;
    return `${head}: its running guest holds the image, but the disk is skipped for another reason → not shut down for it`;
  }
  if (disk.action === "rewrite")
    return `${head}: its running guest holds the image → shut down for the rewrite (never forced), then started again`;
  if (vm?.canShutDown && (guest.zero?.fillBytes ?? 0) > 0)
    return `${head}: its running guest holds the image → shut down only if a rewrite is worth it after the fill`;
  return `${head}: its running guest holds the image, and nothing is rewritten → not shut down for it`;
}

function convert(disk: DiskPlan, policy: DecidingPolicy): string[] {
  if (disk.action !== "rewrite") return [];
  const compress = policy.compress ? "qemu-img convert -c compresses the new image" : "not compressed";
  const backup = policy.keepBackup
    ? "the original is kept as a hard link beside it"
    : "the original is replaced, not kept";
  return [`convert.compress ${policy.compress}, keep_backup ${policy.keepBackup} → ${compress}; ${backup}`];
}

/** A policy's share as written in a playbook, not rounded: 10%, 12.5%. */
function exactPercent(ratio: number): string {
  return `${Number((ratio * 100).toFixed(4))}%`;
}

function reserveText(reserve: DecidingPolicy["fillReserve"]): string {
  return reserve.kind === "ratio" ? exactPercent(reserve.ratio) : formatBytes(reserve.bytes);
}

/** A duration as a playbook writes it: 5m, 90s, 500ms. */
function durationText(ms: number): string {
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
