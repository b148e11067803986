/** What the host's filesystem says about a path: type, identity, size, allocation, ownership. */

import { type CommandResult, describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

export interface FileStat {
  type: "file" | "symlink" | "directory" | "other";
  device: number;
  inode: number;
  /** Apparent size in bytes. */
  size: number;
  /** Bytes actually allocated on the host (st_blocks × 512). */
  allocated: number;
  uid: number;
  gid: number;
  /** Permission bits in octal, e.g. "644". */
  mode: string;
  mtimeSec: number;
  links: number;
}

export type FileStatFact = { exists: false } | ({ exists: true } & FileStat);

const FORMAT = "%F|%d|%i|%s|%b|%B|%u|%g|%a|%Y|%h";

export const fileStat: Fact<{ path: string }, FileStatFact> = {
  name: "file status",
  // No -L: a symlink must be seen as one, since renaming over it would replace the link.
  argv: ({ path }) => ["stat", "-c", FORMAT, "--", path],
  parse: parseFileStat,
};

export function parseFileStat(result: CommandResult): FileStatFact {
  if (result.exitCode !== 0) {
    if (/No such file or directory/.test(result.stderr)) return { exists: false };
    throw new Error(describeFailure(result));
  }
  const fields = result.stdout.trim().split("|");
  if (fields.length !== 11) throw new Error(`unexpected stat output: ${result.stdout.trim()}`);
  const [kind, dev, ino, size, blocks, blockSize, uid, gid, mode, mtime, links] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  return {
    exists: true,
    type:
      kind === "regular file" || kind === "regular empty file"
        ? "file"
        : kind === "symbolic link"
          ? "symlink"
          : kind === "directory"
            ? "directory"
            : "other",
    device: Number(dev),
    inode: Number(ino),
    size: Number(size),
    allocated: Number(blocks) * Number(blockSize),
    uid: Number(uid),
    gid: Number(gid),
    mode,
    mtimeSec: Number(mtime),
    links: Number(links),
  };
}
