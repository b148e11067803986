/**
 * Checks that need both files: every play's host pattern must select hosts of the inventory, and a
 * guest's `host:` must be one of them. Positioned at the value in the playbook.
 */
import type { Inventory } from "../inventory/model.js";
import { selectHosts } from "../inventory/pattern.js";
import { type Diagnostic, sortDiagnostics } from "./diagnostic.js";
import type { Playbook } from "./model.js";

export function checkInventoryReferences(playbook: Playbook, inventory: Inventory): Diagnostic[] {
  const out: Diagnostic[] = [];
  const known = new Set(inventory.hosts.map((h) => h.name));
  for (const play of playbook.plays) {
    // A `hosts` that is not a string was already reported by the schema.
    if (typeof play.hosts !== "string") continue;
    const selected = selectHosts(inventory, play.hosts);
    if ("error" in selected) {
      out.push({ ...play.hostsSource, message: `hosts: ${selected.error}` });
      continue;
    }
    const chosen = new Set(selected.hosts);
    const shown = listed(selected.hosts);
    for (const guest of play.guests) {
      if (guest.host === undefined || !guest.hostSource || chosen.has(guest.host)) continue;
      const message = known.has(guest.host)
        ? `host: '${guest.host}' is not among the hosts the play's pattern '${play.hosts}' selects (${shown})`
        : `host: no host '${guest.host}' in ${inventory.file}`;
      out.push({ ...guest.hostSource, message });
    }
  }
  return sortDiagnostics(out);
}

/** At most ten names: a play over thousands of hosts must not make every message as long. */
function listed(hosts: readonly string[]): string {
  if (hosts.length === 0) return "none";
  if (hosts.length <= 10) return hosts.join(", ");
  return `${hosts.slice(0, 10).join(", ")} and ${hosts.length - 10} more`;
}
