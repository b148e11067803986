/**
 * YAML read with source positions. Every later check (schema, semantics) points back into the
 * file through `locate`, so a user always sees file:line:column.
 */
import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import type { Diagnostic } from "./diagnostic.js";

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

/** Aliases expanded beyond this count are refused: a "billion laughs" document stays cheap. */
const MAX_ALIAS_COUNT = 1000;

/** Configuration files are small; these bounds keep hostile ones cheap to refuse. */
const MAX_BYTES = 4 * 1024 * 1024;
/** The yaml package recurses per nesting level and exhausts the stack around 20,000 levels. */
const MAX_FLOW_DEPTH = 256;

/** Parse YAML text, collecting syntax problems as diagnostics instead of throwing. */
export function parseYaml(file: string, text: string): SourceDocument {
  const refusal = refuseHostile(text);
  if (refusal) {
    const lines = new LineCounter();
    const doc = parseDocument("", { lineCounter: lines });
    lines.lineStarts = [0];
    for (let i = 0; i < text.length && i < refusal.offset; i++) if (text[i] === "\n") lines.addNewLine(i + 1);
    const { line, col } = lines.linePos(refusal.offset);
    return {
      file,
      doc,
      lines,
      diagnostics: [{ file, line, column: col, message: refusal.message }],
      value: null,
    };
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const diagnostics: Diagnostic[] = [...doc.errors, ...doc.warnings].map((e) => {
    const { line, col } = lines.linePos(e.pos[0]);
    return {
      file,
      line: Math.max(line, 1),
      column: Math.max(col, 1),
      message: yamlMessage(e.code, e.message),
    };
  });
  let value: unknown = null;
  if (doc.errors.length === 0) {
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
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

/** Too large, or nested deeper than any configuration needs. */
function refuseHostile(text: string): { offset: number; message: string } | undefined {
  if (text.length > MAX_BYTES)
    return { offset: 0, message: `file too large (${text.length} bytes; at most ${MAX_BYTES})` };
  let depth = 0;
  let quote = "";
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (comment) {
      if (c === "\n") comment = false;
    } else if (quote) {
      // A quote also ends at a line break here: an apostrophe in a plain scalar must not hide
      // the brackets that follow from the count.
      if (c === quote || c === "\n") quote = "";
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#") {
      comment = true;
    } else if (c === "[" || c === "{") {
      depth += 1;
      if (depth > MAX_FLOW_DEPTH)
        return { offset: i, message: `nested more than ${MAX_FLOW_DEPTH} levels deep` };
    } else if (c === "]" || c === "}") {
      depth = Math.max(0, depth - 1);
    }
  }
  return undefined;
}

function yamlMessage(code: string, message: string): string {
  // The yaml package appends a position and an excerpt; we print our own position.
  const first = message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "") ?? message;
  return code === "DUPLICATE_KEY"
    ? "duplicate key: each key may appear once in a mapping"
    : `YAML syntax: ${first}`;
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
      const pair = node.items.find((p) => isPair(p) && scalarKey(p.key) === String(segment));
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

function scalarKey(key: unknown): string | undefined {
  return isScalar(key) ? String(key.value) : undefined;
}
