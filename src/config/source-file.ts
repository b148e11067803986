/**
 * Reading the files a user names (playbooks, inventories, saved plans) no further than
 * MAX_SOURCE_BYTES: a file too large is refused from its size before it is read, and one that grows
 * or never ends (a pipe, /dev/zero) is refused once the limit is read.
 */
import { open, stat } from "node:fs/promises";
import { ConfigError } from "../errors.js";
import type { Diagnostic } from "./diagnostic.js";
import { MAX_SOURCE_BYTES } from "./limits.js";
import { formatBytes } from "./units.js";

const CHUNK_BYTES = 2 ** 20;

/** The refusal of a file of `bytes` bytes (or more, when it was not read to its end). */
function tooLarge(bytes: number, atLeast = false): string {
  return `file too large: ${atLeast ? "more than " : ""}${bytes} bytes (${formatBytes(bytes)}); expected at most ${MAX_SOURCE_BYTES} bytes (${formatBytes(MAX_SOURCE_BYTES)})`;
}

/** Why `text`, already read, is too large to parse; undefined when it is not. */
export function sourceSizeProblem(text: string): string | undefined {
  // A UTF-16 code unit is at least one byte of UTF-8: short text needs no counting.
  if (text.length <= MAX_SOURCE_BYTES / 3) return undefined;
  const bytes = Buffer.byteLength(text, "utf8");
  return bytes > MAX_SOURCE_BYTES ? tooLarge(bytes) : undefined;
}

/**
 * The problem with each regular file among `files` that is larger than MAX_SOURCE_BYTES, found
 * from its size alone. Files that cannot be examined are left to the reader, which says why.
 */
export async function sourceSizeProblems(files: readonly string[]): Promise<Diagnostic[]> {
  const found = await Promise.all(
    files.map(async (file): Promise<Diagnostic[]> => {
      const info = await stat(file).catch(() => undefined);
      if (!info?.isFile() || info.size <= MAX_SOURCE_BYTES) return [];
      return [{ file, line: 1, column: 1, message: tooLarge(info.size) }];
    }),
  );
  return found.flat();
}

/** Throws a ConfigError naming every file among `files` too large to read. */
export async function refuseLargeSources(files: readonly string[]): Promise<void> {
  const problems = await sourceSizeProblems(files);
  if (problems.length > 0) throw new ConfigError(problems);
}

/**
 * The text of `file` (UTF-8), read no further than MAX_SOURCE_BYTES.
 * @throws ConfigError (file:1:1) when it is larger; the file system's error when it cannot be read.
 */
export async function readSourceFile(file: string): Promise<string> {
  return (await readSourceBytes(file)).toString("utf8");
}

/**
 * The bytes of `file`, read no further than MAX_SOURCE_BYTES (for its digest, say).
 * @throws ConfigError (file:1:1) when it is larger; the file system's error when it cannot be read.
 */
export async function readSourceBytes(file: string): Promise<Buffer> {
  const handle = await open(file, "r");
  try {
    const info = await handle.stat();
    if (info.isFile() && info.size > MAX_SOURCE_BYTES)
      throw new ConfigError([{ file, line: 1, column: 1, message: tooLarge(info.size) }]);
    const chunks: Buffer[] = [];
    let length = 0;
    // Up to one byte more than allowed, which tells a file at the limit from one beyond it.
    while (length <= MAX_SOURCE_BYTES) {
      const chunk = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, MAX_SOURCE_BYTES + 1 - length));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
    }
    if (length > MAX_SOURCE_BYTES)
      throw new ConfigError([{ file, line: 1, column: 1, message: tooLarge(MAX_SOURCE_BYTES, true) }]);
    return Buffer.concat(chunks, length);
  } finally {
    await handle.close();
  }
}
