/** The end-of-run recap, Ansible-style, with bytes before, after and reclaimed. */
import { formatBytes } from "../config/units.js";
import type { RunResult } from "../run/results.js";

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
    const sizes =
      d.allocatedAfter !== undefined && d.allocatedBefore !== undefined
        ? `  ${formatBytes(d.allocatedBefore)} → ${formatBytes(d.allocatedAfter)}` +
          (d.estimate && d.status === "changed"
            ? ` (estimated at most ${formatBytes(d.estimate.allocatedAfter)})`
            : "")
        : "";
    lines.push(`${d.status.padEnd(7)} ${d.host} ${d.guest} ${d.path}: ${d.message}${sizes}`);
  }
  lines.push("", "RECAP");
  const width = Math.max(...result.hosts.map((h) => h.host.length), 4);
  for (const h of result.hosts) {
    const counts = `ok=${h.ok} changed=${h.changed} skipped=${h.skipped} failed=${h.failed} unreachable=${h.unreachable ? 1 : 0}`;
    const bytes = `allocated ${formatBytes(h.allocatedBefore)} → ${formatBytes(h.allocatedAfter)}, reclaimed ${formatBytes(h.reclaimed)}`;
    lines.push(
      `${h.host.padEnd(width)} : ${counts}  ${h.unreachable ? `(${h.unreachableReason ?? "unreachable"})` : bytes}`,
    );
  }
  const total = result.hosts.reduce((sum, h) => sum + h.reclaimed, 0);
  lines.push(`reclaimed ${formatBytes(total)} in ${(result.durationMs / 1000).toFixed(1)} s`);
  return lines.join("\n");
}
