/** The Ansible-style recap: per host, how many disks were ok, changed, skipped, failed. */
import type { Plan } from "../plan/plan.js";
import type { DiskResult, HostRecap } from "./results.js";

export function recapHosts(plan: Plan, disks: readonly DiskResult[]): HostRecap[] {
  return plan.hosts.map((hostPlan) => {
    const mine = disks.filter((d) => d.host === hostPlan.host);
    const count = (status: DiskResult["status"]) => mine.filter((d) => d.status === status).length;
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
