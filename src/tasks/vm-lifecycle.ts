/**
 * Stopping a guest so its images can be rewritten, and starting it again. Never forced: a guest
 * that does not shut down within its timeout is left as it is and reported, its images untouched.
 *
 * libvirt: `virsh shutdown` (ACPI, or the guest agent), then domstate until "shut off".
 * guest: the poweroff command inside the guest, then the host waits until QEMU has let go of every
 * image (its lock is how the host knows); `start_command` on the hypervisor starts it again.
 */
import { setTimeout as delay } from "node:timers/promises";
import { gather } from "../facts/fact.js";
import { imageProbe } from "../facts/image-info.js";
import { imagePaths } from "../image/paths.js";
import type { GuestVmPlan } from "../plan/plan.js";
import { describeFailure, type Transport } from "../transport/transport.js";
import { domainState, virshArgv } from "../vm/libvirt.js";
import { removeArgv, writeFileAtomicArgv } from "./host-commands.js";

export interface VmTarget {
  guest: string;
  plan: GuestVmPlan;
  /** The guest's images on the hypervisor: their locks tell when QEMU has let go. */
  images: readonly string[];
  hypervisor: Transport;
  /** The guest itself, for the guest manager's poweroff. */
  guestTransport?: Transport;
  signal?: AbortSignal;
  /** Between two looks at the guest's state (default 1 s). */
  pollMs?: number;
}

export interface VmOutcome {
  ok: boolean;
  message: string;
  /** Nothing needed doing (a guest that never went down is not started). */
  idle?: boolean;
}

const COMMAND_TIMEOUT_MS = 60_000;
const POWEROFF_WAIT_MS = 2_000;

/** Asks the guest to shut down and waits, at most its timeout, until it has. */
export async function stopVm(target: VmTarget): Promise<VmOutcome> {
  const { plan, hypervisor } = target;
  const started = performance.now();
  if (plan.manager === "libvirt") {
    const asked = await hypervisor.run({
      argv: virshArgv(libvirtArgs(target).uri, "shutdown", target.guest),
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    if (asked.exitCode !== 0)
      return { ok: false, message: `virsh shutdown failed: ${describeFailure(asked)}` };
  } else {
    if (!target.guestTransport || !plan.poweroffCommand)
      return { ok: false, message: "no connection to the guest to power it off from inside" };
    // The connection usually drops as the guest goes down, sometimes without a word: the host's
    // view below decides, so the command gets a few seconds and no more.
    const asked = target.guestTransport
      .run({ argv: plan.poweroffCommand, timeoutMs: 20_000 })
      .catch(() => undefined);
    const gaveUp = new AbortController();
    await Promise.race([
      asked,
      delay(POWEROFF_WAIT_MS, undefined, { signal: gaveUp.signal }).catch(() => undefined),
    ]);
    gaveUp.abort();
  }
  const off = await waitUntilOff(target, plan.timeoutMs - (performance.now() - started));
  if (off.ok) return { ok: true, message: `shut down in ${seconds(performance.now() - started)}` };
  const why = target.signal?.aborted
    ? "interrupted while waiting for it to shut down"
    : `did not shut down within ${seconds(plan.timeoutMs)} (${off.message})`;
  // A power-off asked for cannot be taken back: say so, since no start_command will follow it.
  const late = plan.manager === "guest" ? "; it may still power off later, and would then stay off" : "";
  return { ok: false, message: `${why}; not forced off, its images untouched${late}` };
}

/** Starts the guest again: `virsh start`, or the play's start_command. */
export async function startVm(target: VmTarget): Promise<VmOutcome> {
  const { plan, hypervisor } = target;
  if (plan.manager === "libvirt") {
    const now = await gather(hypervisor, domainState, libvirtArgs(target));
    if (now.kind === "domain" && now.state === "running")
      return { ok: true, idle: true, message: "still running: it never went down" };
    // Half-way down (a shutdown given up on at the timeout): it may yet stop, and stay off.
    if (now.kind === "domain" && now.state !== "shut off")
      return {
        ok: false,
        message: `not started: libvirt says it is ${now.state}; if it goes off, start it with virsh start`,
      };
    const started = await hypervisor.run({
      argv: virshArgv(libvirtArgs(target).uri, "start", target.guest),
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    return started.exitCode === 0
      ? { ok: true, message: "started again (virsh start)" }
      : { ok: false, message: `virsh start failed: ${describeFailure(started)}` };
  }
  if (!plan.startCommand)
    return { ok: true, message: "left powered off: the play gives no vm.start_command" };
  const started = await hypervisor.run({ argv: plan.startCommand, timeoutMs: COMMAND_TIMEOUT_MS });
  return started.exitCode === 0
    ? { ok: true, message: `started again (${shortCommand(plan.startCommand)})` }
    : { ok: false, message: `start_command failed: ${describeFailure(started)}` };
}

/** Polls until the guest is off and its images are free, within `budgetMs`, bounded in count too. */
async function waitUntilOff(target: VmTarget, budgetMs: number): Promise<VmOutcome> {
  const pollMs = target.pollMs ?? 1000;
  const deadline = performance.now() + Math.max(0, budgetMs);
  const maxPolls = Math.ceil(Math.max(0, budgetMs) / pollMs) + 2;
  let last = "";
  for (let i = 0; i < maxPolls; i++) {
    if (target.signal?.aborted)
      return { ok: false, message: "interrupted while waiting for the guest to shut down" };
    if (target.plan.manager === "libvirt") {
      const lookup = await gather(target.hypervisor, domainState, libvirtArgs(target));
      last = lookup.kind === "domain" ? lookup.state : lookupMessage(lookup);
      // Once libvirt says shut off, QEMU has exited; its locks went with it. A domain gone from
      // libvirt (undefined meanwhile) with its images free is off as well.
      const off = (lookup.kind === "domain" && lookup.state === "shut off") || lookup.kind === "no-domain";
      if (off && (await lockedImages(target)).length === 0) return { ok: true, message: "shut off" };
    } else {
      const locked = await lockedImages(target);
      if (locked.length === 0) return { ok: true, message: "its images are free" };
      last = `still locked: ${locked.join(", ")}`;
    }
    const left = deadline - performance.now();
    if (left <= 0) break;
    await delay(Math.min(pollMs, left), undefined, target.signal ? { signal: target.signal } : {}).catch(
      () => undefined,
    );
  }
  return { ok: false, message: target.plan.manager === "libvirt" ? `libvirt says ${last}` : last };
}

async function lockedImages(target: VmTarget): Promise<string[]> {
  const probes = await Promise.all(
    target.images.map(async (path) => ({
      path,
      probe: await gather(target.hypervisor, imageProbe, { path }),
    })),
  );
  return probes.filter((p) => p.probe.inUse).map((p) => p.path);
}

function libvirtArgs(target: VmTarget): { uri: string; name: string } {
  return { uri: target.plan.libvirtUri ?? "qemu:///system", name: target.guest };
}

function lookupMessage(lookup: { kind: string; message?: string }): string {
  if (lookup.kind === "no-virsh") return "the hypervisor has no virsh";
  if (lookup.kind === "no-domain") return "no such domain";
  return lookup.message ?? lookup.kind;
}

/** A command as a person reads it in a line: the first words, and how many more there are. */
function shortCommand(argv: readonly string[]): string {
  const text = argv.join(" ");
  if (text.length <= 80) return text;
  const shown: string[] = [];
  for (const arg of argv) {
    if ([...shown, arg].join(" ").length > 60) break;
    shown.push(arg);
  }
  return `${shown.join(" ")} … (${argv.length - shown.length} more arguments)`;
}

function seconds(ms: number): string {
  return ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Beside each image, a marker that reclaim has the guest shut down: if reclaim is killed before it
 * starts the guest again, the next run finds the marker and starts it after its disks.
 */
export async function markStopped(target: VmTarget, now: Date): Promise<void> {
  const note = `${JSON.stringify({ guest: target.guest, manager: target.plan.manager, since: now.toISOString() })}\n`;
  for (const image of target.images) {
    const r = await target.hypervisor.run({
      argv: writeFileAtomicArgv(imagePaths(image).stopped),
      stdin: note,
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    if (r.exitCode !== 0) throw new Error(`cannot note the shutdown beside ${image}: ${describeFailure(r)}`);
  }
}

/** The guest runs again (or is left as the play wants it): the markers go. */
export async function clearStopped(target: VmTarget): Promise<void> {
  const r = await target.hypervisor.run({
    argv: removeArgv(target.images.map((image) => imagePaths(image).stopped)),
    timeoutMs: COMMAND_TIMEOUT_MS,
  });
  if (r.exitCode !== 0) throw new Error(`cannot remove the shutdown markers: ${describeFailure(r)}`);
}
