/**
 * The commands that free blocks inside a Linux guest, and the readers of their output. Trim hands
 * the free blocks back through discard; a fill writes zeros over them so a later rewrite on the
 * host drops them. A fill never takes the filesystem to 100%: it stops `fill_reserve` short, so
 * the guest's own processes keep working (reference: hazard 10).
 */
import { posix } from "node:path";
import type { Reserve } from "../config/model.js";
import { shellScript } from "../transport/quote.js";
import type { GuestFilesystem } from "./filesystems.js";

const MiB = 1024 * 1024;

/** The fill file's fixed name, so a later run finds and removes one left by a lost connection. */
export const FILL_FILE = ".reclaim-zero-fill";

export function fillFilePath(mount: string): string {
  return posix.join(mount, FILL_FILE);
}

/** `sync` first: blocks freed a moment ago are otherwise not trimmed. */
export function trimArgv(mount: string): string[] {
  return shellScript('sync && exec fstrim -v -- "$1"', [mount]);
}

/** Bytes fstrim reports, from util-linux ("1.2 GiB (1288490188 bytes) trimmed") or busybox/old util-linux ("1288490188 bytes trimmed"). */
export function parseTrimmed(stdout: string): number | undefined {
  const m = /\((\d+) bytes\) trimmed|(\d+) bytes (?:were )?trimmed/.exec(stdout);
  return m ? Number(m[1] ?? m[2]) : undefined;
}

/**
 * Writes `mib` MiB of zeros into the fill file, flushes them, and removes the file whatever
 * happens (the trap also covers a signal); exit status is dd's.
 */
export function fillArgv(mount: string, mib: number): string[] {
  if (!Number.isInteger(mib) || mib <= 0)
    throw new RangeError(`fill size must be a positive whole number of MiB, not ${mib}`);
  return shellScript(
    'f=$1; trap \'rm -f -- "$f"\' EXIT HUP INT TERM; dd if=/dev/zero of="$f" bs=1M count="$2" conv=fsync 2>&1; rc=$?; rm -f -- "$f"; sync; exit "$rc"',
    [fillFilePath(mount), String(mib)],
  );
}

/** Removes fill files a lost connection left behind. */
export function removeFillLeftoversArgv(mounts: readonly string[]): string[] {
  return ["rm", "-f", "--", ...mounts.map(fillFilePath)];
}

/**
 * Bytes dd reports as written: GNU dd says "104857600 bytes (105 MB, 100 MiB) copied"; busybox dd
 * only "100+0 records out", whole records of the fill's 1 MiB blocks (a partial one is not counted).
 */
export function parseFilled(output: string): number | undefined {
  const bytes = /(\d+) bytes(?: \([^)]*\))? copied/.exec(output);
  if (bytes) return Number(bytes[1]);
  const records = /(\d+)\+\d+ records out/.exec(output);
  return records ? Number(records[1]) * MiB : undefined;
}

export type FillSize = { mib: number } | { skip: string };

/** How much to fill: the free space less the reserve, in whole MiB; nothing when that is too little. */
export function fillSize(fs: GuestFilesystem, reserve: Reserve): FillSize {
  const keep = reserve.kind === "bytes" ? reserve.bytes : Math.ceil(fs.sizeBytes * reserve.ratio);
  const mib = Math.floor((fs.availableBytes - keep) / MiB);
  if (mib < 1) return { skip: `${fs.mount}: free space is within the reserve, nothing to fill` };
  return { mib };
}
