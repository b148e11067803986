/** Shell-style wildcards as Python's fnmatch reads them, which is how Ansible matches host patterns. */

/**
 * `*` any run of characters, `?` one character, `[abc]` / `[a-z]` one of a set, `[!abc]` one not in
 * it; a `[` without its `]` is itself. Case-sensitive, and the whole name must match. Undefined when
 * a set cannot be read (a range backwards, such as `[9-1]`).
 */
export function globToRegExp(glob: string): RegExp | undefined {
  let source = "";
  for (let i = 0; i < glob.length; i += 1) {
    const c = glob.charAt(i);
    if (c === "*") source += ".*";
    else if (c === "?") source += ".";
    else if (c === "[") {
      const set = readSet(glob, i);
      if (set) {
        source += set.source;
        i = set.end;
      } else {
        source += "\\[";
      }
    } else source += escapeChar(c);
  }
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
