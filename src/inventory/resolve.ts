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
import { byPosition, defineVar, type Position, type RawInventory } from "./raw.js";
import { toBoolean } from "./vars.js";

export interface Resolved {
  inventory: Inventory;
  /** Problems only the whole inventory shows (cycles, sizes); the readers report the rest. */
  diagnostics: Diagnostic[];
}

/**
 * Host-group memberships (a host times every group it is in, through children) in all. Chains of
 * child groups multiply with the hosts: 10,000 groups deep over 100,000 hosts would be a billion.
 * A 50,000-host inventory with each host five groups deep needs 250,000.
 */
export const MAX_MEMBERSHIPS = 2_000_000;

/**
 * Variables hosts receive from their groups, in all: every host gets its own copy, so a [all:vars]
 * section of 100,000 lines over 100,000 hosts would be ten billion. Twenty for each of 100,000 hosts;
 * 1.9 million (19 over 99,990 hosts) were built in 1.5 s with 170 MiB at most.
 */
export const MAX_INHERITED_VARS = 2_000_000;

export function resolveInventory(raw: RawInventory): Resolved {
  const tree = buildGroupTree(raw);
  const { vars: hostVars, at: hostAt } = hostsAsWritten(raw);
  const refuse = (at: Position, message: string): Resolved => ({
    inventory: { file: raw.file, hosts: [], groups: [] },
    diagnostics: [...tree.diagnostics, { file: raw.file, ...at, message }],
  });
  const memberOf = groupsOfHosts(tree, [...hostVars.keys()]);
  if ("tooMany" in memberOf)
    return refuse(
      memberOf.tooMany.at,
      `more than ${MAX_MEMBERSHIPS} host-group memberships (each host in each of its groups and their parents) after this group: expected fewer hosts or shallower child groups`,
    );
  const groupsOf = groupsInOrder(tree, memberOf);
  if ("tooMany" in groupsOf)
    return refuse(
      hostAt.get(groupsOf.tooMany) ?? { line: 1, column: 1 },
      `hosts up to this one inherit more than ${MAX_INHERITED_VARS} group variables in all: expected fewer group variables or fewer hosts`,
    );
  const hosts = [...hostVars].map(([name, vars]) => resolveHost(tree, name, vars, groupsOf.get(name) ?? []));
  const groups = tree.order.flatMap((name) => {
    const node = tree.nodes.get(name);
    return node ? [{ name, hosts: node.hosts, children: node.children, vars: node.vars }] : [];
  });
  return { inventory: { file: raw.file, hosts, groups }, diagnostics: tree.diagnostics };
}

/** Each host's own variables, every place it is written merged (the later wins), and its first place. */
function hostsAsWritten(raw: RawInventory): {
  vars: Map<string, Record<string, unknown>>;
  at: Map<string, Position>;
} {
  const vars = new Map<string, Record<string, unknown>>();
  const at = new Map<string, Position>();
  for (const occurrence of raw.groups.flatMap((g) => g.hosts).sort(byPosition)) {
    let own = vars.get(occurrence.name);
    if (!own) {
      own = {};
      vars.set(occurrence.name, own);
      at.set(occurrence.name, occurrence.at);
    }
    // In place: a host written many times must not be copied each time.
    for (const [key, value] of Object.entries(occurrence.vars)) defineVar(own, key, value);
  }
  return { vars, at };
}

/**
 * Each host's groups in inventory order; or the first host at which the group variables hosts
 * inherit pass MAX_INHERITED_VARS, counted before any host gets its copy.
 */
function groupsInOrder(
  tree: GroupTree,
  memberOf: ReadonlyMap<string, ReadonlySet<string>>,
): Map<string, string[]> | { tooMany: string } {
  const rank = new Map(tree.order.map((name, i) => [name, i]));
  const varCount = new Map(
    [...tree.nodes.values()].map((node) => [node.name, Object.keys(node.vars).length]),
  );
  const groupsOf = new Map<string, string[]>();
  let inherited = 0;
  for (const [host, member] of memberOf) {
    const groups = [...member].sort((a, b) => (rank.get(a) ?? 0) - (rank.get(b) ?? 0));
    for (const group of groups) inherited += varCount.get(group) ?? 0;
    if (inherited > MAX_INHERITED_VARS) return { tooMany: host };
    groupsOf.set(host, groups);
  }
  return groupsOf;
}

/**
 * Every group of every host, directly or through children; or the group at which there are more
 * than MAX_MEMBERSHIPS. On the way, Ansible's `ungrouped` is made to hold exactly the hosts in no
 * group but `all`: such hosts are added to it, and a host written under `ungrouped` that is also in
 * another group is taken out.
 */
function groupsOfHosts(
  tree: GroupTree,
  hostOrder: readonly string[],
): Map<string, Set<string>> | { tooMany: GroupNode } {
  const memberOf = new Map(hostOrder.map((host) => [host, new Set<string>()]));
  let memberships = 0;
  const join = (hosts: readonly string[], group: string) => {
    const ancestors = tree.ancestorsOf(group);
    memberships += hosts.length * ancestors.size;
    if (memberships > MAX_MEMBERSHIPS) return false;
    for (const host of hosts) for (const ancestor of ancestors) memberOf.get(host)?.add(ancestor);
    return true;
  };
  for (const node of tree.nodes.values())
    if (node.name !== "ungrouped" && node.hosts.length > 0 && !join(node.hosts, node.name))
      return { tooMany: node };
  const ungrouped = tree.nodes.get("ungrouped");
  if (ungrouped) {
    ungrouped.hosts = hostOrder.filter((host) => [...(memberOf.get(host) ?? [])].every((g) => g === "all"));
    if (!join(ungrouped.hosts, "ungrouped")) return { tooMany: ungrouped };
  }
  return memberOf;
}

/** `groups`: every group of the host, in inventory order. */
function resolveHost(
  tree: GroupTree,
  name: string,
  ownVars: Record<string, unknown>,
  groups: string[],
): InventoryHost {
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
