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
  for (const play of playbook.plays) {
    // A `hosts` that is not a string was already reported by the schema.
    if (typeof play.hosts !== "string") continue;
    const selected = selectHosts(inventory, play.hosts);
    if ("error" in selected) {
      out.push({ ...play.hostsSource, message: `hosts: ${selected.error}` });
      continue;
    }
    for (const guest of play.guests) {
      if (guest.host === undefined || !guest.hostSource || selected.hosts.includes(guest.host)) continue;
      const known = inventory.hosts.some((h) => h.name === guest.host);
      const message = known
        ? `host: '${guest.host}' is not among the hosts the play's pattern '${play.hosts}' selects (${selected.hosts.join(", ") || "none"})`
        : `host: no host '${guest.host}' in ${inventory.file}`;
      out.push({ ...guest.hostSource, message });
    }
  }
  return sortDiagnostics(out);
}
