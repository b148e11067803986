/**
 * The groups of an inventory as Ansible arranges them: every declaration of a name merged into one
 * group, `all` at the root with `ungrouped` and every group that has no other parent under it, and
 * each group's depth (the longest way down from `all`, which decides whose vars win).
 */
import type { Diagnostic } from "../config/diagnostic.js";
import { byPosition, type RawChild, type RawInventory } from "./raw.js";

export interface GroupNode {
  name: string;
  /** Hosts declared directly in the group, each once, in file order. */
  hosts: string[];
  children: string[];
  parents: string[];
  /** The group's own vars; where it is declared twice, the later declaration wins. */
  vars: Record<string, unknown>;
  /** 0 for `all`, 1 for the groups right under it, and so on down the longest way. */
  depth: number;
}

export interface GroupTree {
  /** `all`, `ungrouped`, then every other group in the order the file first names it. */
  order: string[];
  nodes: Map<string, GroupNode>;
  /** Children that would make a group contain itself; they are left out of the tree. */
  diagnostics: Diagnostic[];
  /** The group itself and every group above it, `all` included. */
  ancestorsOf(name: string): ReadonlySet<string>;
}

const IMPLICIT_GROUPS = ["all", "ungrouped"] as const;

/** Merge the declarations in `raw` into one tree; cycles are reported, then cut. */
export function buildGroupTree(raw: RawInventory): GroupTree {
  const declarations = [...raw.groups].sort(byPosition);
  const mentions = [...declarations, ...declarations.flatMap((d) => d.children)].sort(byPosition);
  const order = unique([...IMPLICIT_GROUPS, ...mentions.map((m) => m.name)]);
  const nodes = new Map(order.map((name) => [name, emptyNode(name)]));
  const edges = new Map<string, RawChild[]>();
  // Each parent-child pair once, at its first mention; a Set keeps long child lists linear.
  const seen = new Set<string>();
  const diagnostics: Diagnostic[] = [];
  for (const declaration of declarations) {
    const node = nodes.get(declaration.name);
    if (!node) continue;
    node.vars = { ...node.vars, ...declaration.vars };
    node.hosts = unique([...node.hosts, ...declaration.hosts.map((h) => h.name)]);
    for (const child of declaration.children) {
      if (child.name === "all") {
        diagnostics.push({
          file: raw.file,
          ...child.at,
          message: `'all' holds every group and cannot be a child of '${declaration.name}'`,
        });
        continue;
      }
      const edge = `${declaration.name}\n${child.name}`;
      if (seen.has(edge)) continue;
      seen.add(edge);
      const list = edges.get(declaration.name);
      if (list) list.push(child);
      else edges.set(declaration.name, [child]);
    }
  }
  const cut = findCycles(order, edges, raw.file, diagnostics);
  for (const [parent, children] of edges) {
    for (const child of children) if (!cut.has(child)) link(nodes, parent, child.name);
  }
  // Ansible's reconciliation: `ungrouped` and every group without a parent go under `all`.
  for (const name of order) {
    const node = nodes.get(name);
    if (name !== "all" && node && (name === "ungrouped" || node.parents.length === 0))
      link(nodes, "all", name);
  }
  const all = nodes.get("all");
  if (all) all.children = unique(["ungrouped", ...all.children]);
  setDepths(order, nodes);
  return { order, nodes, diagnostics, ancestorsOf: ancestry(nodes) };
}

function emptyNode(name: string): GroupNode {
  return { name, hosts: [], children: [], parents: [], vars: {}, depth: 0 };
}

function link(nodes: Map<string, GroupNode>, parent: string, child: string): void {
  const p = nodes.get(parent);
  const c = nodes.get(child);
  if (!p || !c || p.children.includes(child)) return;
  p.children.push(child);
  c.parents.push(parent);
}

/**
 * Depth-first through the children (with an explicit stack: a long INI chain must not overflow
 * the call stack); an edge back to a group still being walked closes a cycle.
 */
function findCycles(
  order: readonly string[],
  edges: Map<string, RawChild[]>,
  file: string,
  out: Diagnostic[],
): Set<RawChild> {
  const cut = new Set<RawChild>();
  const state = new Map<string, "walking" | "done">();
  for (const root of order) {
    if (state.has(root)) continue;
    const stack = [{ name: root, next: 0 }];
    state.set(root, "walking");
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const edge = top && edges.get(top.name)?.[top.next];
      if (!top || !edge) {
        if (top) state.set(top.name, "done");
        stack.pop();
        continue;
      }
      top.next += 1;
      const seen = state.get(edge.name);
      if (seen === "walking") {
        cut.add(edge);
        const loop = [
          ...stack.slice(stack.findIndex((f) => f.name === edge.name)).map((f) => f.name),
          edge.name,
        ];
        out.push({
          file,
          ...edge.at,
          message: `group cycle: ${loop.join(" → ")}; a group cannot contain itself`,
        });
      } else if (seen === undefined) {
        state.set(edge.name, "walking");
        stack.push({ name: edge.name, next: 0 });
      }
    }
  }
  return cut;
}

/** Parents before children (Kahn's order: the tree has no cycle left), each child one below its deepest parent. */
function setDepths(order: readonly string[], nodes: Map<string, GroupNode>): void {
  const waiting = new Map(order.map((name) => [name, nodes.get(name)?.parents.length ?? 0]));
  const ready = order.filter((name) => waiting.get(name) === 0);
  for (let i = 0; i < ready.length; i += 1) {
    const node = nodes.get(ready[i] ?? "");
    if (!node) continue;
    for (const childName of node.children) {
      const child = nodes.get(childName);
      if (!child) continue;
      child.depth = Math.max(child.depth, node.depth + 1);
      const left = (waiting.get(childName) ?? 0) - 1;
      waiting.set(childName, left);
      if (left === 0) ready.push(childName);
    }
  }
}

/** Ancestors walked upwards on demand and remembered: only groups that hold hosts are ever asked. */
function ancestry(nodes: Map<string, GroupNode>): (name: string) => ReadonlySet<string> {
  const known = new Map<string, Set<string>>();
  return (name) => {
    let found = known.get(name);
    if (!found) {
      found = new Set([name]);
      const queue = [name];
      for (let i = 0; i < queue.length; i += 1) {
        for (const parent of nodes.get(queue[i] ?? "")?.parents ?? []) {
          if (!found.has(parent)) {
            found.add(parent);
            queue.push(parent);
          }
        }
      }
      known.set(name, found);
    }
    return found;
  };
}

function unique(names: readonly string[]): string[] {
  return [...new Set(names)];
}
