/** The end-of-run recap, Ansible-style, with bytes before, after and reclaimed. */
import { formatBytes } from "../config/units.js";
import type { DiskResult, RunResult } from "../run/results.js";

export function formatRecap(result: RunResult): string {
  const lines: string[] = [];
  for (const g of result.guests) {
    lines.push(
      `${(g.ok ? "guest" : "failed").padEnd(7)} ${g.host} ${g.guest} (inside the guest): ${g.message}`,
    );
  }
  for (const v of result.vms.filter((r) => !r.idle)) {
    lines.push(
      `${(v.ok ? (v.action === "shutdown" ? "stopped" : "started") : "failed").padEnd(7)} ${v.host} ${v.guest} (${v.action}, ${v.manager}): ${v.message}`,
    );
  }
  for (const d of result.disks) {
    const estimate = d.status === "changed" ? compared([d]) : undefined;
    const sizes =
      d.allocatedAfter !== undefined && d.allocatedBefore !== undefined
        ? `  ${formatBytes(d.allocatedBefore)} → ${formatBytes(d.allocatedAfter)}` +
          (estimate ? ` (${estimate.text})` : "")
        : "";
    lines.push(`${d.status.padEnd(7)} ${d.host} ${d.guest} ${d.path}: ${d.message}${sizes}`);
  }
  lines.push("", formatRecapSummary(result));
  return lines.join("\n");
}

/** The recap's summary, all that `--quiet` prints: the RECAP block per host and the total reclaimed. */
export function formatRecapSummary(result: RunResult): string {
  const lines = ["RECAP"];
  const width = Math.max(...result.hosts.map((h) => h.host.length), 4);
  for (const h of result.hosts) {
    const counts = `ok=${h.ok} changed=${h.changed} skipped=${h.skipped} failed=${h.failed} unreachable=${h.unreachable ? 1 : 0}`;
    const bytes = `allocated ${formatBytes(h.allocatedBefore)} → ${formatBytes(h.allocatedAfter)}, reclaimed ${formatBytes(h.reclaimed)}`;
    lines.push(
      `${h.host.padEnd(width)} : ${counts}  ${h.unreachable ? `(${h.unreachableReason ?? "unreachable"})` : bytes}`,
    );
  }
  const total = result.hosts.reduce((sum, h) => sum + h.reclaimed, 0);
  const rewritten = compared(result.disks.filter((d) => d.status === "changed"));
  const estimated = rewritten
    ? `; ${rewritten.count} rewritten disk${rewritten.count === 1 ? "" : "s"}: ${rewritten.text}`
    : "";
  lines.push(`reclaimed ${formatBytes(total)} in ${(result.durationMs / 1000).toFixed(1)} s${estimated}`);
  return lines.join("\n");
}

/**
 * What was estimated for the images' sizes after their rewrites (an upper bound, from qemu-img
 * measure) next to what they allocate now, measured: `estimated ≤ 6 GiB, got 5.3 GiB`, and an
 * overshoot said in words. Only disks with both; undefined when there are none.
 */
function compared(disks: readonly DiskResult[]): { count: number; text: string } | undefined {
  const both = disks.filter((d) => d.estimate !== undefined && d.allocatedAfter !== undefined);
  if (both.length === 0) return undefined;
  const estimated = both.reduce((sum, d) => sum + (d.estimate?.allocatedAfter ?? 0), 0);
  const got = both.reduce((sum, d) => sum + (d.allocatedAfter ?? 0), 0);
  const over = got > estimated ? `: ${formatBytes(got - estimated)} more than the estimate` : "";
  return {
    count: both.length,
    text: `estimated ≤ ${formatBytes(estimated)}, got ${formatBytes(got)}${over}`,
  };
}
