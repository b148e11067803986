/**
 * The yaml package's parseDocument, taken apart so that every token can be looked at as it is
 * read: a document too large, too deep or with too many anchors is refused at the token that
 * crosses the limit, before the syntax tree grows past it and before anything recurses over it.
 */
import { Composer, CST, type Document, Lexer, type LineCounter, Parser, YAMLParseError } from "yaml";
import { MAX_ANCHORS_AND_ALIASES, MAX_NESTING, MAX_YAML_TOKENS } from "./limits.js";

/** Why a document is not read, and the offset it points at. */
export interface Refusal {
  offset: number;
  message: string;
}

/**
 * `text` as one YAML document, or the first limit it crosses. `lines` learns every line break read,
 * so the caller can turn offsets into lines and columns either way. Duplicate keys are left to
 * yaml-nodes.ts: the yaml package's own check compares each key with every earlier one.
 */
export function parseBounded(text: string, lines: LineCounter): Document.Parsed | Refusal {
  const parser = new Parser(lines.addNewLine);
  const tokens: CST.Token[] = [];
  let count = 0;
  let anchors = 0;
  lines.addNewLine(0);
  for (const lexeme of new Lexer().lex(text)) {
    count += 1;
    if (count > MAX_YAML_TOKENS)
      return {
        offset: parser.offset,
        message: `more than ${MAX_YAML_TOKENS} YAML tokens (values, punctuation, spaces, comments): expected a smaller file`,
      };
    const type = CST.tokenType(lexeme);
    if ((type === "anchor" || type === "alias") && ++anchors > MAX_ANCHORS_AND_ALIASES)
      return {
        offset: parser.offset,
        message: `more than ${MAX_ANCHORS_AND_ALIASES} anchors and aliases: expected at most ${MAX_ANCHORS_AND_ALIASES} in one file`,
      };
    for (const token of parser.next(lexeme)) tokens.push(token);
    const deepest = deepestCollection(parser.stack);
    if (deepest.depth > MAX_NESTING)
      return { offset: deepest.offset, message: `nested more than ${MAX_NESTING} levels deep` };
  }
  for (const token of parser.end()) tokens.push(token);
  return compose(tokens, text.length);
}

/**
 * The parser's stack is the path of open tokens: the document, its open collections, and at most
 * one scalar being read on top.
 */
function deepestCollection(stack: readonly CST.Token[]): { depth: number; offset: number } {
  const top = stack[stack.length - 1];
  const inner = top && CST.isCollection(top) ? top : stack[stack.length - 2];
  const collections = stack.length - 1 - (inner === top ? 0 : 1);
  return { depth: collections, offset: inner && "offset" in inner ? inner.offset : 0 };
}

/** What parseDocument does with the tokens: the first document, and an error for any other. */
function compose(tokens: readonly CST.Token[], end: number): Document.Parsed {
  const composer = new Composer({ uniqueKeys: false });
  let doc: Document.Parsed | undefined;
  for (const next of composer.compose(tokens, true, end)) {
    if (!doc) {
      doc = next;
      continue;
    }
    doc.errors.push(
      new YAMLParseError(
        [next.range[0], next.range[1]],
        "MULTIPLE_DOCS",
        "Source contains multiple documents; please use YAML.parseAllDocuments()",
      ),
    );
    break;
  }
  // compose(…, forceDoc = true) always yields a document, if only an empty one.
  return doc as Document.Parsed;
}
