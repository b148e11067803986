/** What the demos show and compare of an image file on this machine. */
import { RunError } from "../errors.js";
import { gather } from "../facts/fact.js";
import { fileStat } from "../facts/file-stat.js";
import type { Transport } from "../transport/transport.js";

/** Bytes the file allocates on the host (st_blocks × 512). */
export async function allocatedBytes(transport: Transport, path: string): Promise<number> {
  const stat = await gather(transport, fileStat, { path });
  if (!stat.exists) throw new RunError(`${path} vanished`);
  return stat.allocated;
}

/** Device and inode: unchanged exactly when reclaim left the file alone (it never writes in place). */
export async function fileIdentity(transport: Transport, path: string): Promise<string> {
  const stat = await gather(transport, fileStat, { path });
  // Not the mtime: a running guest writes to its own image (an ext4 journal commit a few seconds
  // after a read updated an atime) and that is not reclaim touching it. A rewrite is a new inode.
  return stat.exists ? `${stat.device}:${stat.inode}` : "missing";
}
