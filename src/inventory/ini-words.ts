/**
 * The pieces of an INI inventory line as Ansible reads them: host lines are split like a POSIX
 * shell (Python's shlex, with `#` comments), and values become numbers or booleans when they read
 * as Python literals.
 */

export interface Word {
  text: string;
  /** 1-based column where the word starts in its line. */
  column: number;
}

export type Words = { words: Word[] } | { error: string; column: number };

/**
 * Split `line` at unquoted whitespace, removing quotes and backslash escapes, up to an unquoted `#`.
 * `offset` is the 0-based index of `line`'s first character in the file's line, for the columns.
 */
export function splitWords(line: string, offset = 0): Words {
  const words: Word[] = [];
  let current: Word | undefined;
  let i = 0;
  while (i < line.length) {
    const c = line.charAt(i);
    if (/\s/.test(c)) {
      if (current) words.push(current);
      current = undefined;
      i += 1;
      continue;
    }
    if (c === "#") break;
    current ??= { text: "", column: offset + i + 1 };
    if (c === "'" || c === '"') {
      const quoted = readQuoted(line, i);
      if (quoted === undefined) return { error: `unterminated ${c} quote`, column: offset + i + 1 };
      current.text += quoted.text;
      i = quoted.end;
    } else if (c === "\\") {
      if (i + 1 >= line.length)
        return { error: "nothing follows the '\\' at the end of the line", column: offset + i + 1 };
      current.text += line.charAt(i + 1);
      i += 2;
    } else {
      // A run of ordinary characters at once: a line of megabytes is read in one step, not millions.
      PLAIN.lastIndex = i;
      const end = PLAIN.exec(line)?.index ?? line.length;
      current.text += line.slice(i, end);
      i = end;
    }
  }
  if (current) words.push(current);
  return { words };
}

/** What ends a run of ordinary characters in splitWords. */
const PLAIN = /[\s#'"\\]/g;

/** The text inside the quote opening at `start`, and the index after its closing quote. */
function readQuoted(line: string, start: number): { text: string; end: number } | undefined {
  const quote = line.charAt(start);
  // In double quotes a backslash escapes only a quote or another backslash, as in POSIX shells.
  const stop = quote === '"' ? /["\\]/g : /'/g;
  let text = "";
  let i = start + 1;
  for (;;) {
    stop.lastIndex = i;
    const found = stop.exec(line);
    if (!found) return undefined;
    text += line.slice(i, found.index);
    if (found[0] === quote) return { text, end: found.index + 1 };
    const next = line.charAt(found.index + 1);
    // A backslash before anything else is itself.
    text += next === '"' || next === "\\" ? next : "\\";
    i = found.index + (next === '"' || next === "\\" ? 2 : 1);
  }
}

/**
 * `line` without a trailing comment: a `#` outside quotes that starts the line or follows
 * whitespace. (Ansible keeps such text in a :vars value; we drop it, as a reader of the file would.)
 */
export function withoutComment(line: string): string {
  let quote = "";
  for (let i = 0; i < line.length; i += 1) {
    const c = line.charAt(i);
    if (quote) {
      if (c === quote) quote = "";
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line.charAt(i - 1)))) {
      return line.slice(0, i).trimEnd();
    }
  }
  return line.trimEnd();
}

/**
 * A value as Ansible's INI reader would type it (ast.literal_eval, where it succeeds): quoted text,
 * whole and decimal numbers, True, False, None; anything else stays text. Lists and dicts stay text.
 * When `asText`, only the quotes are removed: a user name of 1000 is still a name.
 */
export function iniValue(raw: string, asText: boolean): unknown {
  const quoted = /^(['"])(.*)\1$/s.exec(raw);
  if (quoted) return quoted[2];
  if (asText) return raw;
  if (/^[-+]?(?:0|[1-9][0-9]*)$/.test(raw)) return Number(raw);
  if (/^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/.test(raw)) return Number(raw);
  if (raw === "True") return true;
  if (raw === "False") return false;
  if (raw === "None") return null;
  return raw;
}
