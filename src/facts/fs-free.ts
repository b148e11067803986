/** Space available to an unprivileged writer on the filesystem holding a directory. */

import { type CommandResult, describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

export interface FsFree {
  availableBytes: number;
  /** The filesystem's whole size, for messages. */
  sizeBytes?: number;
}

export const fsFree: Fact<{ dir: string }, FsFree> = {
  name: "free space",
  argv: ({ dir }) => ["stat", "-f", "-c", "%a|%S|%T|%b", "--", dir],
  parse: parseFsFree,
};

export function parseFsFree(result: CommandResult): FsFree {
  if (result.exitCode !== 0) throw new Error(describeFailure(result));
  const [avail, blockSize, , blocks] = result.stdout.trim().split("|");
  const available = Number(avail) * Number(blockSize);
  if (!Number.isFinite(available)) throw new Error(`unexpected stat -f output: ${result.stdout.trim()}`);
  const size = Number(blocks) * Number(blockSize);
  return { availableBytes: available, ...(blocks && Number.isFinite(size) ? { sizeBytes: size } : {}) };
}
