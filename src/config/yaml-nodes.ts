/**
 * One walk over a parsed YAML document, before anything converts or validates it: duplicate keys,
 * and aliases that would make the document larger than it looks (the "billion laughs"), point back
 * into themselves, or name no anchor. The walk keeps its own stack and visits each written node
 * once, so a hostile document costs time in proportion to its text, not to its expansion.
 */
import { type Document, isAlias, isMap, isPair, isScalar, isSeq, type Node } from "yaml";
import { MAX_ALIAS_EXPANSION } from "./limits.js";
import type { Refusal } from "./yaml-bounded.js";

export interface NodeProblems {
  /** One for each key that repeats an earlier key of the same mapping. */
  duplicates: Refusal[];
  /** An alias that must not be expanded: when set, the document's value must not be computed. */
  alias?: Refusal;
}

interface Frame {
  node?: Node;
  children: unknown[];
  next: number;
  /** Nodes under this one (itself included) once aliases are expanded, so far. */
  size: number;
}

const DUPLICATE = "duplicate key: each key may appear once in a mapping";

/**
 * Duplicate keys as the yaml package's `uniqueKeys` finds them (scalar keys of equal value), with a
 * set per mapping rather than comparing each key with every earlier one; and every alias, resolved
 * as the yaml package resolves it: the nearest anchor of that name before it.
 */
export function checkNodes(doc: Document.Parsed): NodeProblems {
  const duplicates: Refusal[] = [];
  /** The expanded size of each anchored node once it is complete; absent while it is still open. */
  const sizes = new Map<Node, number>();
  const anchors = new Map<string, Node>();
  let added = 0;
  const stack: Frame[] = [{ children: [doc.contents], next: 0, size: 0 }];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as Frame;
    if (frame.next >= frame.children.length) {
      stack.pop();
      if (frame.node?.anchor) sizes.set(frame.node, frame.size);
      const parent = stack[stack.length - 1];
      if (parent) parent.size += frame.size;
      continue;
    }
    const child = frame.children[frame.next++];
    if (isAlias(child)) {
      const problem = aliasProblem(child.source, anchors, sizes, added);
      if (typeof problem === "string")
        return { duplicates, alias: { offset: child.range?.[0] ?? 0, message: problem } };
      added += problem;
      frame.size += problem;
    } else if (isScalar(child) || isMap(child) || isSeq(child)) {
      if (child.anchor) anchors.set(child.anchor, child);
      stack.push({ node: child, children: childrenOf(child, duplicates), next: 0, size: 1 });
    }
  }
  return { duplicates };
}

/** The nodes an alias of `name` adds, or why it must not be expanded. */
function aliasProblem(
  name: string,
  anchors: ReadonlyMap<string, Node>,
  sizes: ReadonlyMap<Node, number>,
  added: number,
): number | string {
  const target = anchors.get(name);
  if (!target) return `alias *${name} has no anchor &${name} before it`;
  const size = sizes.get(target);
  if (size === undefined)
    return `alias *${name} is inside the node it names: expected an alias of a node complete before it`;
  if (added + size > MAX_ALIAS_EXPANSION)
    return `alias *${name} makes aliases repeat more than ${MAX_ALIAS_EXPANSION} nodes in all (a "billion laughs" document?): expected far fewer`;
  return size;
}

/** Keys and values in document order; a repeated scalar key of a mapping is recorded on the way. */
function childrenOf(node: Node, duplicates: Refusal[]): unknown[] {
  if (!isMap(node) && !isSeq(node)) return [];
  const children: unknown[] = [];
  const keys = new Set<unknown>();
  // YAML 1.1's !!omap and !!pairs are sequences of pairs.
  for (const item of node.items) {
    if (!isPair(item)) {
      children.push(item);
      continue;
    }
    if (isMap(node) && isScalar(item.key)) {
      if (keys.has(item.key.value)) duplicates.push({ offset: item.key.range?.[0] ?? 0, message: DUPLICATE });
      keys.add(item.key.value);
    }
    children.push(item.key, item.value);
  }
  return children;
}
