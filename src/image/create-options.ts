/**
 * The `-o` options that make a rewritten qcow2 keep the original's creation options. Without them
 * `qemu-img convert` uses its defaults and silently drops e.g. lazy_refcounts=on.
 */
import type { Qcow2Options } from "../facts/image-info.js";

export function qcow2CreateOptions(options: Qcow2Options): string[] {
  const out: string[] = [];
  if (options.compat !== undefined) out.push(`compat=${options.compat}`);
  if (options.clusterSize !== undefined) out.push(`cluster_size=${options.clusterSize}`);
  if (options.lazyRefcounts !== undefined) out.push(`lazy_refcounts=${options.lazyRefcounts ? "on" : "off"}`);
  if (options.compressionType !== undefined) out.push(`compression_type=${options.compressionType}`);
  if (options.extendedL2 !== undefined) out.push(`extended_l2=${options.extendedL2 ? "on" : "off"}`);
  if (options.refcountBits !== undefined) out.push(`refcount_bits=${options.refcountBits}`);
  // Values come from qemu-img's own JSON and are numbers or enum words: no commas to escape.
  return out;
}
