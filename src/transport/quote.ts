/**
 * POSIX shell quoting, for the one place a shell string is unavoidable: the command line an SSH
 * server hands to the user's shell. Every element becomes one word, whatever it contains.
 */

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one word so that `sh` reads it back unchanged (newlines, quotes, `$()` included). */
export function quoteWord(word: string): string {
  if (word.includes("\0")) throw new TypeError("a command argument cannot contain a NUL byte");
  if (word !== "" && SAFE.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Quote an argv into a command line for `sh -c`. */
export function quoteArgv(argv: readonly string[]): string {
  return argv.map(quoteWord).join(" ");
}

/**
 * A shell script that receives all of its data as positional parameters: the script text is a
 * constant written by us, the data never becomes code.
 */
export function shellScript(script: string, args: readonly string[]): string[] {
  return ["sh", "-c", script, "reclaim", ...args];
}
