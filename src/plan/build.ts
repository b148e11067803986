/**
 * Assembles the per-disk decisions into the plan, pure. A guest that names no host is looked for
 * on every host of its play and planned only where its disks are.
 */
import {
  type DiskPlan,
  type GuestPlan,
  type GuestVmPlan,
  type GuestZeroPlan,
  type HostPlan,
  isChange,
  PLAN_VERSION,
  type Plan,
  type PlanTotals,
} from "./plan.js";

export interface GuestOnHost {
  host: string;
  guest: string;
  play: string;
  playIndex: number;
  /** The guest named this host itself (`host:`); otherwise it was looked for here. */
  pinned: boolean;
  notes: string[];
  zero?: GuestZeroPlan;
  vm?: GuestVmPlan;
  disks: DiskPlan[];
}

export interface HostEntry {
  host: string;
  plays: number[];
  unreachable?: string;
  notes?: string[];
  guests: GuestOnHost[];
}

export function buildPlan(entries: readonly HostEntry[], createdAt: Date): Plan {
  const foundSomewhere = new Set<string>();
  for (const entry of entries) {
    for (const g of entry.guests)
      if (g.disks.some((d) => !d.absent)) foundSomewhere.add(`${g.playIndex}\0${g.guest}`);
  }
  const hosts: HostPlan[] = entries.map((entry) => {
    const guests: GuestPlan[] = entry.guests
      .filter(
        (g) =>
          g.pinned || g.disks.some((d) => !d.absent) || !foundSomewhere.has(`${g.playIndex}\0${g.guest}`),
      )
      .map((g) => ({
        name: g.guest,
        play: g.play,
        playIndex: g.playIndex,
        notes: g.notes,
        ...(g.zero ? { zero: g.zero } : {}),
        ...(g.vm ? { vm: g.vm } : {}),
        disks: g.disks,
      }));
    return {
      host: entry.host,
      plays: entry.plays,
      ...(entry.unreachable ? { unreachable: entry.unreachable } : {}),
      ...(entry.notes ? { notes: entry.notes } : {}),
      guests,
    };
  });
  return { version: PLAN_VERSION, createdAt: createdAt.toISOString(), hosts, totals: totalsOf(hosts) };
}

export function totalsOf(hosts: readonly HostPlan[]): PlanTotals {
  const disks = hosts.flatMap((h) => h.guests.flatMap((g) => g.disks));
  return {
    disksToRewrite: disks.filter((d) => d.action === "rewrite" || d.action === "finish").length,
    disksOk: disks.filter((d) => d.action === "ok").length,
    disksSkipped: disks.filter((d) => d.action === "skip").length,
    estimatedReclaim: disks
      .filter((d) => d.action === "rewrite" || d.action === "finish")
      .reduce((sum, d) => sum + (d.estimate?.reclaim ?? 0), 0),
  };
}

/** Whether applying the plan would change anything (Terraform's "changes pending"). */
export function hasChanges(plan: Plan): boolean {
  return plan.hosts.some((h) =>
    h.guests.some(
      (g) =>
        g.disks.some((d) => isChange(d.action)) ||
        (g.zero !== undefined &&
          (g.zero.leftovers.length > 0 || g.zero.steps.some((st) => st.kind !== "skip"))),
    ),
  );
}
