/** Shell-style wildcards as Python's fnmatch reads them, which is how Ansible matches host patterns. */

/**
 * `*` any run of characters, `?` one character, `[abc]` / `[a-z]` one of a set, `[!abc]` one not in
 * it; a `[` without its `]` is itself. Case-sensitive, and the whole name must match. Undefined when
 * a set cannot be read (a range backwards, such as `[9-1]`).
 *
 * The expression never backtracks more than once over the name: `*a*a*a*b` as `^.*a.*a.*a.*b$`
 * would take exponential time on a long run of `a`s. Each part between two stars is matched at its
 * first place, which is where fnmatch would find it too, since every part has a fixed length.
 */
export function globToRegExp(glob: string): RegExp | undefined {
  // The expression of each run of characters between stars.
  const parts: string[] = [];
  let part = "";
  for (let i = 0; i < glob.length; i += 1) {
    const c = glob.charAt(i);
    if (c === "*") {
      parts.push(part);
      part = "";
    } else if (c === "?") part += ".";
    else if (c === "[") {
      const set = readSet(glob, i);
      if (set) {
        part += set.source;
        i = set.end;
      } else {
        part += "\\[";
      }
    } else part += escapeChar(c);
  }
  parts.push(part);
  const [first = "", ...rest] = parts;
  const last = rest.pop();
  // A lookahead does not backtrack into itself: with the back-reference it takes the first place only.
  const middle = rest
    .filter((part) => part !== "")
    .map((part, i) => `(?=(.*?${part}))\\${i + 1}`)
    .join("");
  const source = last === undefined ? first : `${first}${middle}.*${last}`;
  try {
    return new RegExp(`^${source}$`, "s");
  } catch {
    return undefined;
  }
}

/** Whether `text` holds a wildcard, so that it must be matched rather than looked up. */
export function isGlob(text: string): boolean {
  return /[*?[]/.test(text);
}

function readSet(glob: string, open: number): { source: string; end: number } | undefined {
  let i = open + 1;
  const negated = glob.charAt(i) === "!";
  if (negated) i += 1;
  // A `]` first in the set is a member, not its end.
  if (glob.charAt(i) === "]") i += 1;
  const close = glob.indexOf("]", i);
  if (close < 0) return undefined;
  const members = glob.slice(negated ? open + 2 : open + 1, close).replace(/[\\\]^]/g, (m) => `\\${m}`);
  return { source: `[${negated ? "^" : ""}${members}]`, end: close };
}

function escapeChar(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}
