/**
 * Pure: which manager controls a guest's VM, what state it is in, and whether it will be shut
 * down so the images it holds can be rewritten. Only an image the guest itself holds is ever
 * decided as if free: libvirt must list it among the domain's disks, or (guest manager) the play
 * must name it as the guest's disk; anything else locked stays a running process's image.
 */
import type { Guest } from "../config/model.js";
import type { DiskFacts } from "../facts/disk.js";
import { type DomainDisk, type DomainLookup, isActive } from "../vm/libvirt.js";
import type { GuestVmPlan } from "./plan.js";

/** What libvirt said about the guest; absent when the manager is `guest` (libvirt not asked). */
export interface LibvirtFacts {
  lookup: DomainLookup;
  disks?: DomainDisk[];
}

export interface VmDecision {
  vm?: GuestVmPlan;
  /** Paths of locked images the guest holds and that may be rewritten once it is shut down. */
  stopsFor: Set<string>;
  /** Why a locked image of this guest stays locked, for its skip reason. */
  whyRunning?: string;
  /** Nothing runs inside the guest: do not try to reach it for guest-side steps. */
  shutOff?: string;
  /** Whether the guest's discards reach its images (libvirt's discard='unmap' on every disk). */
  discardReachesImages?: boolean;
  notes: string[];
}

export function decideVm(
  guest: Pick<Guest, "name" | "os" | "ssh" | "access" | "vm" | "policy">,
  libvirt: LibvirtFacts | undefined,
  disks: readonly DiskFacts[],
): VmDecision {
  const notes: string[] = [];
  const locked = disks.filter((d) => d.inUse).map((d) => d.path);
  const graceful = guest.policy.shutdown === "graceful";
  const timeoutMs = guest.policy.shutdownTimeoutMs;
  const lookup = libvirt?.lookup;

  if (lookup?.kind === "domain") {
    const domainDisks = libvirt?.disks ?? [];
    const sources = new Set(domainDisks.map((d) => d.source));
    const named = new Set(disks.map((d) => d.path));
    // Only the images the play names: another disk's discard setting says nothing about them.
    const mine = domainDisks.filter((d) => named.has(d.source));
    const discardReachesImages = mine.length > 0 && mine.every((d) => d.discard === "unmap");
    const base = {
      manager: "libvirt" as const,
      state: lookup.state,
      libvirtUri: guest.vm.libvirtUri,
      timeoutMs,
    };
    if (!isActive(lookup.state)) {
      const startAfter = lookup.state === "shut off" && disks.some((d) => d.stoppedByReclaim);
      return {
        vm: { ...base, canShutDown: false, shutdown: false, ...(startAfter ? { startAfter } : {}) },
        stopsFor: new Set(),
        shutOff: `libvirt says the guest is ${lookup.state}: nothing runs inside it to trim or fill`,
        ...(domainDisks.length ? { discardReachesImages } : {}),
        notes,
      };
    }
    const stopsFor = new Set(locked.filter((p) => sources.has(p)));
    const why =
      lookup.state !== "running"
        ? `the guest is ${lookup.state}; only a running guest is shut down`
        : !graceful
          ? "shutdown: never keeps the guest running"
          : lookup.persistent === false
            ? "it is a transient libvirt domain, which vanishes when shut down: reclaim could not start it again"
            : undefined;
    const canShutDown = why === undefined && stopsFor.size > 0;
    return {
      vm: { ...base, canShutDown, shutdown: false },
      stopsFor: canShutDown ? stopsFor : new Set(),
      ...(why ? { whyRunning: why } : {}),
      ...(domainDisks.length ? { discardReachesImages } : {}),
      notes,
    };
  }

  if (guest.vm.manager === "libvirt") {
    const why =
      lookup?.kind === "no-virsh"
        ? "vm.manager is libvirt but the hypervisor has no virsh"
        : lookup?.kind === "no-domain"
          ? `libvirt (${guest.vm.libvirtUri}) has no domain named '${guest.name}'`
          : `cannot ask libvirt about the guest: ${lookup?.kind === "error" ? lookup.message : "no answer"}`;
    notes.push(`${why}; it is not shut down or started`);
    return { stopsFor: new Set(), whyRunning: why, notes };
  }
  // Said only where it matters: a running guest is then managed from inside instead.
  if (lookup?.kind === "error" && locked.length > 0)
    notes.push(`libvirt did not answer (${lookup.message}); managed from inside the guest`);

  // The guest manager: its disks' locks are how the host sees it running.
  if (locked.length === 0) {
    if (!disks.some((d) => d.stoppedByReclaim)) return { stopsFor: new Set(), notes };
    // Powered off by an interrupted run of ours: started again after its disks.
    const vm: GuestVmPlan = {
      manager: "guest",
      state: "off",
      canShutDown: false,
      shutdown: false,
      timeoutMs,
      startAfter: true,
      ...(guest.vm.startCommand ? { startCommand: startCommandFor(guest.vm.startCommand, guest.name) } : {}),
    };
    return { vm, stopsFor: new Set(), notes };
  }
  const why = !graceful
    ? "shutdown: never keeps the guest running"
    : guest.access === "ssh" && !guest.ssh
      ? "the guest manager powers a guest off from inside, and this guest has no ssh: settings"
      : undefined;
  const canShutDown = why === undefined;
  const vm: GuestVmPlan = {
    manager: "guest",
    state: "running",
    canShutDown,
    shutdown: false,
    timeoutMs,
    poweroffCommand: guest.os === "windows" ? ["shutdown.exe", "/s", "/t", "0"] : ["poweroff"],
    ...(guest.vm.startCommand ? { startCommand: startCommandFor(guest.vm.startCommand, guest.name) } : {}),
  };
  return {
    vm,
    stopsFor: canShutDown ? new Set(locked) : new Set(),
    ...(why ? { whyRunning: why } : {}),
    notes,
  };
}

/** `{guest}` in any argument becomes the guest's name: an argument, never shell text. */
export function startCommandFor(template: readonly string[], guest: string): string[] {
  return template.map((arg) => arg.replaceAll("{guest}", guest));
}
