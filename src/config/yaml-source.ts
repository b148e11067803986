/**
 * YAML read with source positions. Every later check (schema, semantics) points back into the
 * file through `locate`, so a user always sees file:line:column.
 */
import {
  type Document,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type YAMLMap,
} from "yaml";
import type { Diagnostic } from "./diagnostic.js";
import { MAX_ALIAS_EXPANSION } from "./limits.js";
import { sourceSizeProblem } from "./source-file.js";
import { parseBounded, type Refusal } from "./yaml-bounded.js";
import { checkNodes } from "./yaml-nodes.js";

export type PathSegment = string | number;
export type YamlPath = readonly PathSegment[];

export interface SourceDocument {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
  /** Syntax errors and duplicate keys: when non-empty, `value` must not be trusted. */
  diagnostics: Diagnostic[];
  /** The document as plain data (aliases expanded, within limits). */
  value: unknown;
}

/**
 * Parse YAML text, collecting syntax problems as diagnostics instead of throwing. Hostile text (too
 * large, too deep, an alias bomb) is refused with a position, in time and memory bounded by
 * limits.ts, before anything recurses over it.
 */
export function parseYaml(file: string, text: string): SourceDocument {
  const lines = new LineCounter();
  const tooLarge = sourceSizeProblem(text);
  const parsed = tooLarge ? { offset: 0, message: tooLarge } : parseBounded(text, lines);
  if (!("contents" in parsed)) return refused(file, lines, [parsed]);
  const doc = parsed;
  const diagnostics: Diagnostic[] = [...doc.errors, ...doc.warnings].map((e) => ({
    file,
    ...position(lines, e.pos[0]),
    message: yamlMessage(e.message),
  }));
  const nodes = checkNodes(doc);
  const problems = nodes.alias ? [...nodes.duplicates, nodes.alias] : nodes.duplicates;
  diagnostics.push(...problems.map((p) => ({ file, ...position(lines, p.offset), message: p.message })));
  let value: unknown = null;
  if (diagnostics.length === 0) {
    try {
      // checkNodes has bounded the expansion; the yaml package's own count is a second guard.
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSION });
    } catch (error) {
      diagnostics.push({
        file,
        line: 1,
        column: 1,
        message: `cannot read the document: ${(error as Error).message}`,
      });
    }
  }
  return { file, doc, lines, diagnostics, value };
}

/** A document that was not parsed to the end: an empty one, and why. */
function refused(file: string, lines: LineCounter, problems: readonly Refusal[]): SourceDocument {
  const doc = parseDocument("");
  const diagnostics = problems.map((p) => ({ file, ...position(lines, p.offset), message: p.message }));
  return { file, doc, lines, diagnostics, value: null };
}

/** 1-based; offsets past what the line counter has seen fall on its last line. */
function position(lines: LineCounter, offset: number): { line: number; column: number } {
  if (lines.lineStarts.length === 0) return { line: 1, column: offset + 1 };
  const { line, col } = lines.linePos(offset);
  return { line: Math.max(line, 1), column: Math.max(col, 1) };
}

function yamlMessage(message: string): string {
  // The yaml package appends a position and an excerpt; we print our own position.
  const first = message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "") ?? message;
  return `YAML syntax: ${first}`;
}

/**
 * The position of the node at `path`: its key when `at` is "key" and the path ends in a mapping key,
 * otherwise its value. A path that runs out early resolves to the deepest node that exists.
 */
export function locate(
  src: SourceDocument,
  path: YamlPath,
  at: "key" | "value" = "value",
): { line: number; column: number } {
  let node: unknown = src.doc.contents;
  let keyNode: unknown;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = pairOf(node, String(segment));
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof segment === "number" && node.items[segment] !== undefined) {
      keyNode = undefined;
      node = node.items[segment];
    } else {
      break;
    }
  }
  const target = at === "key" && keyNode ? keyNode : node;
  const offset = (target as Node | undefined)?.range?.[0] ?? 0;
  const { line, col } = src.lines.linePos(offset);
  return { line: Math.max(line, 1), column: Math.max(col, 1) };
}

/** A diagnostic at `path` in `src`. */
export function diagnosticAt(
  src: SourceDocument,
  path: YamlPath,
  message: string,
  at: "key" | "value" = "value",
): Diagnostic {
  return { file: src.file, ...locate(src, path, at), message };
}

/** Each mapping's first pair for each key, indexed when first searched: locate runs once per host. */
const pairIndex = new WeakMap<YAMLMap, Map<string, Pair>>();

function pairOf(map: YAMLMap, key: string): Pair | undefined {
  let index = pairIndex.get(map);
  if (!index) {
    index = new Map();
    for (const pair of map.items) {
      const name = isPair(pair) ? scalarKey(pair.key) : undefined;
      if (name !== undefined && !index.has(name)) index.set(name, pair);
    }
    pairIndex.set(map, index);
  }
  return index.get(key);
}

function scalarKey(key: unknown): string | undefined {
  return isScalar(key) ? String(key.value) : undefined;
}
