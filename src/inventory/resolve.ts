/**
 * From the inventory as written to the inventory reclaim works with: each host's groups (through
 * children), its variables after Ansible's precedence, and how to reach it.
 *
 * Precedence, lowest first: `all`'s vars, then every other group of the host ordered by depth
 * (a child group below its parent, so the child wins) and, at equal depth, by name (so the group
 * later in the alphabet wins), then the host's own vars. This is Ansible's order with every
 * ansible_group_priority at its default; that variable is not read. A host written in several places
 * gets all its variables, the later place winning; a group declared twice likewise.
 */
import type { Diagnostic } from "../config/diagnostic.js";
import { connectionOf } from "./connection.js";
import { buildGroupTree, type GroupNode, type GroupTree } from "./group-tree.js";
import type { Inventory, InventoryHost } from "./model.js";
import { byPosition, type RawInventory } from "./raw.js";
import { toBoolean } from "./vars.js";

export interface Resolved {
  inventory: Inventory;
  /** Problems only the whole inventory shows (cycles); the readers report the rest. */
  diagnostics: Diagnostic[];
}

export function resolveInventory(raw: RawInventory): Resolved {
  const tree = buildGroupTree(raw);
  const hostVars = new Map<string, Record<string, unknown>>();
  for (const occurrence of raw.groups.flatMap((g) => g.hosts).sort(byPosition)) {
    hostVars.set(occurrence.name, { ...hostVars.get(occurrence.name), ...occurrence.vars });
  }
  const memberOf = groupsOfHosts(tree, [...hostVars.keys()]);
  const hosts = [...hostVars].map(([name, vars]) =>
    resolveHost(tree, name, vars, memberOf.get(name) ?? new Set()),
  );
  const groups = tree.order.flatMap((name) => {
    const node = tree.nodes.get(name);
    return node ? [{ name, hosts: node.hosts, children: node.children, vars: node.vars }] : [];
  });
  return { inventory: { file: raw.file, hosts, groups }, diagnostics: tree.diagnostics };
}

/**
 * Every group of every host, directly or through children. On the way, Ansible's `ungrouped` is made
 * to hold exactly the hosts in no group but `all`: such hosts are added to it, and a host written
 * under `ungrouped` that is also in another group is taken out.
 */
function groupsOfHosts(tree: GroupTree, hostOrder: readonly string[]): Map<string, Set<string>> {
  const memberOf = new Map(hostOrder.map((host) => [host, new Set<string>()]));
  const join = (hosts: readonly string[], group: string) => {
    const ancestors = tree.ancestorsOf(group);
    for (const host of hosts) for (const ancestor of ancestors) memberOf.get(host)?.add(ancestor);
  };
  for (const node of tree.nodes.values())
    if (node.name !== "ungrouped" && node.hosts.length > 0) join(node.hosts, node.name);
  const ungrouped = tree.nodes.get("ungrouped");
  if (ungrouped) {
    ungrouped.hosts = hostOrder.filter((host) => [...(memberOf.get(host) ?? [])].every((g) => g === "all"));
    join(ungrouped.hosts, "ungrouped");
  }
  return memberOf;
}

function resolveHost(
  tree: GroupTree,
  name: string,
  ownVars: Record<string, unknown>,
  memberOf: Set<string>,
): InventoryHost {
  const groups = tree.order.filter((g) => memberOf.has(g));
  const byPrecedence = groups
    .map((g) => tree.nodes.get(g))
    .filter((node): node is GroupNode => node !== undefined)
    .sort((a, b) => a.depth - b.depth || compareNames(a.name, b.name));
  // fromEntries, not assignment: a variable named __proto__ must stay a variable. Later entries win.
  const groupVars = Object.fromEntries(byPrecedence.flatMap((node) => Object.entries(node.vars)));
  const vars = { ...groupVars, ...ownVars };
  return { name, connection: connectionOf(name, vars), become: toBoolean(vars.ansible_become), vars, groups };
}

/** Plain string order, as Python's sort in Ansible has it; not the locale's. */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
