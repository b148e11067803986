/**
 * The journal of one image rewrite, kept beside the image on its host. It is the only state a
 * re-run needs: where the rewrite got to, and the identity of the files it was made from.
 */
import type { FileStat } from "../facts/file-stat.js";

/** Identity of a file: if any of these changed, it is not the file we verified. */
export interface FileIdentity {
  device: number;
  inode: number;
  size: number;
  mtimeSec: number;
}

export interface Journal {
  version: 1;
  image: string;
  temp: string;
  /**
   * converting: the temporary image may be partial and is worthless.
   * verified: the temporary image is durable and equal to `original`; only the swap is left.
   */
  phase: "converting" | "verified";
  original: FileIdentity;
  /** Set once verified. */
  converted?: FileIdentity;
  /** Where the original is kept when keep_backup is on. */
  backup?: string;
  startedAt: string;
}

export function identityOf(stat: FileStat): FileIdentity {
  return { device: stat.device, inode: stat.inode, size: stat.size, mtimeSec: stat.mtimeSec };
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.device === b.device && a.inode === b.inode && a.size === b.size && a.mtimeSec === b.mtimeSec;
}

/** Parses a journal; anything unreadable is reported as such, never trusted. */
export function parseJournal(text: string): Journal | { unreadable: string } {
  try {
    const value = JSON.parse(text) as Partial<Journal>;
    if (
      value.version !== 1 ||
      (value.phase !== "converting" && value.phase !== "verified") ||
      !value.original
    ) {
      return { unreadable: "not a reclaim journal of a known version" };
    }
    return value as Journal;
  } catch (error) {
    return { unreadable: (error as Error).message };
  }
}
