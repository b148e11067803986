/**
 * `--shard K/N`: a CI matrix of N jobs, each taking its share of the guests. Which share a guest
 * falls in depends only on its host and name (a hash), never on the order of files or on the
 * machine, so every guest is in exactly one shard, and stays there from run to run.
 */
import { createHash } from "node:crypto";

export interface Shard {
  /** 1-based, as written: 1/3, 2/3, 3/3. */
  index: number;
  count: number;
}

/** "2/5" → {index: 2, count: 5}; undefined when it is not K/N with 1 ≤ K ≤ N. */
export function parseShard(text: string): Shard | undefined {
  const m = /^\s*(\d{1,6})\s*\/\s*(\d{1,6})\s*$/.exec(text);
  if (!m) return undefined;
  const index = Number(m[1]);
  const count = Number(m[2]);
  return index >= 1 && count >= 1 && index <= count ? { index, count } : undefined;
}

export function inShard(shard: Shard | undefined, host: string, guest: string): boolean {
  if (!shard || shard.count === 1) return true;
  const digest = createHash("sha256").update(`${host}\0${guest}`).digest();
  return (digest.readUInt32BE(0) % shard.count) + 1 === shard.index;
}
