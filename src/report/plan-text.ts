/** The human plan, read like a good `terraform plan`: per host, guest and disk, what and why. */
import { formatBytes } from "../config/units.js";
import type { DiskPlan, GuestPlan, GuestVmPlan, Plan, ZeroStep } from "../plan/plan.js";
import { formatDecision } from "./plan-diff.js";

const VERB: Record<DiskPlan["action"], string> = {
  rewrite: "rewrite",
  finish: "finish",
  cleanup: "clean up",
  ok: "ok",
  skip: "skip",
};

export interface PlanTextOptions {
  /** `--diff`: under each disk, the policy values that decided it and how. */
  diff?: boolean;
}

export function formatPlan(plan: Plan, options: PlanTextOptions = {}): string {
  const lines: string[] = [];
  for (const host of plan.hosts) {
    lines.push(`${host.host}${host.unreachable ? `  UNREACHABLE: ${host.unreachable}` : ""}`);
    for (const note of host.notes ?? []) lines.push(`  note: ${note}`);
    if (!host.unreachable && host.guests.length === 0)
      lines.push("  (no guests of the playbook on this host)");
    for (const guest of host.guests) {
      lines.push(`  guest ${guest.name}  (play: ${guest.play})`);
      for (const note of guest.notes) lines.push(`    note: ${note}`);
      if (guest.zero) {
        lines.push("    inside the guest, first:");
        for (const leftover of guest.zero.leftovers)
          lines.push(`      remove a fill file an interrupted run left in ${leftover}`);
        for (const step of guest.zero.steps)
          lines.push(`      ${describeZeroStep(step, guest.zero.os === "windows")}`);
      }
      if (guest.vm)
        lines.push(`    vm (${guest.vm.manager}): ${describeVm(guest.vm, guest.zero?.fillBytes ?? 0)}`);
      for (const disk of guest.disks) lines.push(...formatDisk(disk, guest, options.diff === true));
    }
    lines.push("");
  }
  lines.push(formatTotals(plan));
  return lines.join("\n");
}

/** The word the plan uses for a disk's action. */
export function actionWord(action: DiskPlan["action"]): string {
  return VERB[action];
}

function formatDisk(disk: DiskPlan, guest: GuestPlan, diff: boolean): string[] {
  const lines = [`    ${disk.path}`, `      ${VERB[disk.action]}: ${disk.reason}`];
  if (disk.estimate) {
    const e = disk.estimate;
    lines.push(
      `      allocated ${formatBytes(e.allocatedBefore)} → at most ${formatBytes(e.allocatedAfter)} (estimate)`,
    );
  }
  if (diff) lines.push("      decided by:", ...formatDecision(disk, guest).map((line) => `        ${line}`));
  disk.steps.forEach((step, i) => {
    lines.push(`      ${i + 1}. ${step.description}`);
  });
  return lines;
}

/**
 * The plan in one line, as Terraform ends its plan: what is rewritten and left alone, what it
 * should give back and how that was estimated, and which guests are worked on or shut down.
 */
export function formatTotals(plan: Plan): string {
  const t = plan.totals;
  const disks = (n: number) => `${n} disk${n === 1 ? "" : "s"}`;
  const reclaim =
    t.disksToRewrite > 0
      ? `, ~${formatBytes(t.estimatedReclaim)} to reclaim (estimated from qemu-img measure, an upper bound of the new sizes: often more comes back)`
      : "";
  const unreachable = plan.hosts.filter((h) => h.unreachable).length;
  const guests = plan.hosts.flatMap((h) => h.guests);
  const count = (n: number, what: string) => (n > 0 ? `; ${n} guest${n === 1 ? "" : "s"} ${what}` : "");
  const inside = count(
    guests.filter((g) => g.zero?.steps.some((st) => st.kind !== "skip")).length,
    "to trim or fill first",
  );
  const stopped = guests.filter((g) => g.vm?.shutdown);
  const down = count(stopped.length, `to shut down and start again${downtime(stopped)}`);
  const maybe = count(
    guests.filter((g) => g.vm && !g.vm.shutdown && g.vm.canShutDown && (g.zero?.fillBytes ?? 0) > 0).length,
    "to shut down if the fill makes a rewrite worth it",
  );
  return `Plan: ${disks(t.disksToRewrite)} to rewrite, ${t.disksOk} ok, ${t.disksSkipped} skipped${reclaim}${inside}${down}${maybe}${unreachable ? `; ${unreachable} host(s) unreachable` : ""}.`;
}

/**
 * How long guests stay down, as far as the plan knows it: the shutdown is bounded by its
 * shutdown_timeout; the rewrites take what converting and comparing their images takes on the
 * hypervisor's storage, which the plan does not know, so it gives their size and no time.
 */
function downtime(stopped: readonly GuestPlan[]): string {
  if (stopped.length === 0) return "";
  const limits = stopped.map((g) => g.vm?.timeoutMs ?? 0);
  const low = Math.min(...limits);
  const high = Math.max(...limits);
  const limit = low === high ? humanDuration(low) : `${humanDuration(low)}–${humanDuration(high)}`;
  const images = stopped
    .flatMap((g) => g.disks)
    .filter((d) => d.afterShutdown && d.action === "rewrite")
    .reduce((sum, d) => sum + (d.estimate?.allocatedBefore ?? 0), 0);
  const [each, all] = stopped.length === 1 ? ["", ""] : ["each ", " in all"];
  return ` (${each}down for its shutdown, at most ${limit}, then while its images are converted and verified: ${formatBytes(images)}${all}, no time estimated: that depends on the storage)`;
}

/** A duration for people: 5 min, 90 s. */
function humanDuration(ms: number): string {
  return ms >= 60_000 && ms % 60_000 === 0 ? `${ms / 60_000} min` : `${Math.round(ms / 1000)} s`;
}

/** What happens to a guest's VM, in one line: its state, and the shutdown and start if planned. */
export function describeVm(vm: GuestVmPlan, fillBytes: number): string {
  const limit = `${Math.round(vm.timeoutMs / 1000)} s`;
  const stop =
    vm.manager === "libvirt"
      ? `virsh shutdown (waits up to ${limit}, never forces it off)`
      : `${(vm.poweroffCommand ?? ["poweroff"]).join(" ")} inside the guest, then wait up to ${limit} for its images to be free`;
  const start =
    vm.manager === "libvirt"
      ? "virsh start"
      : vm.startCommand
        ? vm.startCommand.join(" ")
        : "nothing: no vm.start_command, it stays off";
  if (vm.startAfter)
    return `${vm.state}: an interrupted run of reclaim shut it down; started again after its disks: ${start}`;
  if (vm.shutdown) return `${vm.state}; shut down for the rewrite: ${stop}; then start again: ${start}`;
  if (vm.canShutDown && fillBytes > 0)
    return `${vm.state}; shut down only if, after the fill, a rewrite is worth it: ${stop}; then ${start}`;
  return vm.state;
}

/** One guest-side step as the plan says it. */
export function describeZeroStep(step: ZeroStep, windows: boolean): string {
  switch (step.kind) {
    case "trim":
      return windows
        ? `retrim ${step.mount} (Optimize-Volume -ReTrim; sdelete -z where the volume cannot be trimmed)`
        : `trim ${step.mount} (fstrim: discard reaches the disk)`;
    case "fill":
      if (windows)
        return `zero the free space of ${step.mount} with sdelete -z (about ${formatBytes(step.mib * 1024 * 1024)}; fills the volume for a moment)`;
      return `fill ${step.mount} with ${formatBytes(step.mib * 1024 * 1024)} of zeros (leaving the reserve free), then remove the file`;
    case "skip":
      return `leave ${step.mount} alone: ${step.reason}`;
  }
}
