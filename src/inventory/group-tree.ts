/**
 * The groups of an inventory as Ansible arranges them: every declaration of a name merged into one
 * group, `all` at the root with `ungrouped` and every group that has no other parent under it, and
 * each group's depth (the longest way down from `all`, which decides whose vars win).
 */
import type { Diagnostic } from "../config/diagnostic.js";
import { byPosition, defineVar, type Position, type RawChild, type RawInventory } from "./raw.js";

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
  /** Where the file first names the group (1:1 for an implicit `all` or `ungrouped`). */
  at: Position;
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
  const firstAt = new Map<string, Position>();
  for (const mention of mentions) if (!firstAt.has(mention.name)) firstAt.set(mention.name, mention.at);
  const nodes = new Map(order.map((name) => [name, emptyNode(name, firstAt.get(name))]));
  const edges = new Map<string, RawChild[]>();
  // Each parent-child pair once, at its first mention; sets keep long lists linear.
  const seen = new Set<string>();
  const hostsOf = new Map<string, Set<string>>();
  const diagnostics: Diagnostic[] = [];
  for (const declaration of declarations) {
    const node = nodes.get(declaration.name);
    if (!node) continue;
    // In place: a group declared many times must not be copied each time.
    for (const [key, value] of Object.entries(declaration.vars)) defineVar(node.vars, key, value);
    let hosts = hostsOf.get(node.name);
    if (!hosts) {
      hosts = new Set();
      hostsOf.set(node.name, hosts);
    }
    for (const host of declaration.hosts) {
      if (hosts.has(host.name)) continue;
      hosts.add(host.name);
      node.hosts.push(host.name);
    }
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
  const linked = new Set<string>();
  for (const [parent, children] of edges) {
    for (const child of children) if (!cut.has(child)) link(nodes, linked, parent, child.name);
  }
  // Ansible's reconciliation: `ungrouped` and every group without a parent go under `all`.
  for (const name of order) {
    const node = nodes.get(name);
    if (name !== "all" && node && (name === "ungrouped" || node.parents.length === 0))
      link(nodes, linked, "all", name);
  }
  const all = nodes.get("all");
  if (all) all.children = unique(["ungrouped", ...all.children]);
  setDepths(order, nodes);
  return { order, nodes, diagnostics, ancestorsOf: ancestry(nodes) };
}

function emptyNode(name: string, at: Position = { line: 1, column: 1 }): GroupNode {
  return { name, hosts: [], children: [], parents: [], vars: {}, depth: 0, at };
}

function link(nodes: Map<string, GroupNode>, linked: Set<string>, parent: string, child: string): void {
  const p = nodes.get(parent);
  const c = nodes.get(child);
  const edge = `${parent}\n${child}`;
  if (!p || !c || linked.has(edge)) return;
  linked.add(edge);
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
  /** A group's place on the stack while it is being walked, "done" after. */
  const state = new Map<string, number | "done">();
  for (const root of order) {
    if (state.has(root)) continue;
    const stack = [{ name: root, next: 0 }];
    state.set(root, 0);
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
      if (typeof seen === "number") {
        cut.add(edge);
        out.push({
          file,
          ...edge.at,
          message: `group cycle: ${loopThrough(stack, seen, edge.name)}; a group cannot contain itself`,
        });
      } else if (seen === undefined) {
        state.set(edge.name, stack.length);
        stack.push({ name: edge.name, next: 0 });
      }
    }
  }
  return cut;
}

/**
 * `a → b → a`, from the stack's `from`th group back to it; a long loop by its ends, so that a hostile
 * chain of thousands of groups, each closing a loop, does not cost thousands of names a message.
 */
function loopThrough(stack: readonly { name: string }[], from: number, closing: string): string {
  const names = (start: number, end: number) => stack.slice(start, end).map((f) => f.name);
  const length = stack.length - from;
  const loop =
    length <= 12
      ? names(from, stack.length)
      : [...names(from, from + 6), `… ${length - 12} more …`, ...names(stack.length - 6, stack.length)];
  return [...loop, closing].join(" → ");
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
