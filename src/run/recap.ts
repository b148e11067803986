/** The Ansible-style recap: per host, how many disks were ok, changed, skipped, failed. */
import type { Plan } from "../plan/plan.js";
import type { DiskResult, GuestZeroResult, HostRecap, VmActionResult } from "./results.js";

/**
 * Per host: its disks by status; a guest-side step or a shutdown/start that failed counts as a
 * failure of its host too, as the exit code does.
 */
export function recapHosts(
  plan: Plan,
  disks: readonly DiskResult[],
  others: { guests?: readonly GuestZeroResult[]; vms?: readonly VmActionResult[] } = {},
): HostRecap[] {
  return plan.hosts.map((hostPlan) => {
    const mine = disks.filter((d) => d.host === hostPlan.host);
    const otherFailures =
      (others.guests ?? []).filter((g) => g.host === hostPlan.host && !g.ok).length +
      (others.vms ?? []).filter((v) => v.host === hostPlan.host && !v.ok).length;
    const count = (status: DiskResult["status"]) =>
      mine.filter((d) => d.status === status).length + (status === "failed" ? otherFailures : 0);
    const before = mine.reduce((sum, d) => sum + (d.allocatedBefore ?? 0), 0);
    const after = mine.reduce((sum, d) => sum + (d.allocatedAfter ?? d.allocatedBefore ?? 0), 0);
    return {
      host: hostPlan.host,
      ok: count("ok"),
      changed: count("changed"),
      skipped: count("skipped"),
      failed: count("failed"),
      unreachable: hostPlan.unreachable !== undefined,
      ...(hostPlan.unreachable ? { unreachableReason: hostPlan.unreachable } : {}),
      allocatedBefore: before,
      allocatedAfter: after,
      reclaimed: Math.max(0, before - after),
    };
  });
}
