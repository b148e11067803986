/**
 * The guest's filesystems that free space can be given back from: real, writable, mounted once
 * (bind mounts and pseudo filesystems are left out), with their sizes and whether the block device
 * under them passes discard. Read with /proc/mounts, `df -P` and /sys, which busybox guests have too.
 */
import { type CommandResult, describeFailure } from "../transport/transport.js";

export interface GuestFilesystem {
  mount: string;
  device: string;
  type: string;
  sizeBytes: number;
  usedBytes: number;
  availableBytes: number;
  /** The block device reports discard support (discard_max_bytes > 0). */
  discard: boolean;
}

/** Filesystems whose free space is worth trimming or filling; everything else is left alone. */
const RECLAIMABLE_TYPES = new Set(["ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs"]);

export const mountsArgv = ["cat", "/proc/mounts"];
export const dfArgv = ["df", "-P", "-k"];
/** A constant script: each block device and partition with its discard limit (and a dm name). */
export const discardArgv = [
  "sh",
  "-c",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
  'for d in /sys/block/*; do n=${d##*/}; m=$(cat "$d/queue/discard_max_bytes" 2>/dev/null || echo 0); echo "$n $m $(cat "$d/dm/name" 2>/dev/null)"; for p in "$d"/"$n"*; do [ -e "$p/partition" ] && echo "${p##*/} $m"; done; done',
];

/** /proc/mounts escapes spaces and the like as octal (\040). */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

export function parseGuestFilesystems(
  mounts: CommandResult,
  df: CommandResult,
  discard: CommandResult,
): GuestFilesystem[] {
  for (const r of [mounts, df]) if (r.exitCode !== 0) throw new Error(describeFailure(r));
  const discardBy = new Map<string, boolean>();
  for (const line of discard.stdout.split("\n")) {
    const [name, max, dmName] = line.trim().split(/\s+/);
    if (!name) continue;
    discardBy.set(name, Number(max) > 0);
    if (dmName) discardBy.set(`mapper/${dmName}`, Number(max) > 0);
  }
  // df -P: the mount point is the last field and may contain spaces; the other five never do.
  const sizes = new Map<string, { size: number; used: number; avail: number }>();
  for (const line of df.stdout.split("\n").slice(1)) {
    const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+(.+)$/.exec(line.trim());
    if (m)
      sizes.set(m[5] as string, {
        size: Number(m[2]) * 1024,
        used: Number(m[3]) * 1024,
        avail: Number(m[4]) * 1024,
      });
  }
  const seen = new Set<string>();
  const out: GuestFilesystem[] = [];
  for (const line of mounts.stdout.split("\n")) {
    const [source, target, type, options] = line.split(" ");
    if (!source || !target || !type || !options) continue;
    if (!RECLAIMABLE_TYPES.has(type) || options.split(",").includes("ro")) continue;
    // A device mounted twice (a bind mount) is one filesystem: fill or trim it once.
    if (seen.has(source)) continue;
    seen.add(source);
    const mount = unescapeMount(target);
    const size = sizes.get(mount);
    if (!size) continue;
    out.push({
      mount,
      device: source,
      type,
      sizeBytes: size.size,
      usedBytes: size.used,
      availableBytes: size.avail,
      discard: discardBy.get(source.replace(/^\/dev\//, "")) ?? false,
    });
  }
  return out;
}
