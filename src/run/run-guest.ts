/**
 * One guest of a host, in the order the job needs: free the blocks inside it, decide again whether
 * a shutdown is worth it, shut it down, rewrite its disks, start it again.
 */
import { gather } from "../facts/fact.js";
import { fileStat } from "../facts/file-stat.js";
import type { DiskPlan, GuestPlan, GuestVmPlan, GuestZeroPlan } from "../plan/plan.js";
import type { RewriteHints } from "../tasks/rewrite-image.js";
import { clearStopped, markStopped, startVm, stopVm, type VmOutcome } from "../tasks/vm-lifecycle.js";
import { applyZeroGuest } from "../tasks/zero-guest.js";
import type { Transport } from "../transport/transport.js";
import { mapLimit } from "./concurrency.js";
import type { ExecuteOptions, HostOutcome, Runners } from "./execute.js";
import type { DiskResult, GuestZeroResult, VmActionResult } from "./results.js";
import { failed, noteOnly, skipped } from "./run-disk.js";
/**
 * One guest: free the blocks inside it first; then, if it holds images worth rewriting and may be
 * stopped, shut it down, rewrite, and start it again (always, once a shutdown was asked for,
 * whatever became of the rewrites).
 */
export async function runGuest(
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
    // An interrupted run of ours left it shut down: up again now that its disks are done.
    if (vm?.startAfter) out.vms.push(await vmAction("start", host, guest, vm, options, run));
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

export async function executeVm(
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
  if (action === "start") {
    const started = await startVm(target);
    if (started.ok) await clearStopped(target);
    return started;
  }
  // Noted before the guest is asked to go down: a run killed from here on leaves the marker, and
  // the next run starts the guest again.
  await markStopped(target, (options.now ?? (() => new Date()))());
  const stopped = await stopVm(target);
  if (!stopped.ok) await clearStopped(target).catch(() => undefined);
  return stopped;
}

export async function executeGuestZero(
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
      const progress = (mount: string, bytes: number, totalBytes: number) =>
        options.emit({ type: "guest-zero-progress", host, guest: guest.name, mount, bytes, totalBytes });
      const outcomes = await applyZeroGuest(plan, transport, options.signal, hostAllocated, {
        onFill: progress,
      });
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
