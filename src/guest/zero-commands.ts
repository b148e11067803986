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

/** Exit status of a fill that found another fill running on the same filesystem. */
export const FILL_BUSY_EXIT = 75;

/**
 * Writes `mib` MiB of zeros into the fill file and removes it whatever happens (on a signal too).
 * The zeros go in chunks, each flushed, and before each the free space is read again: when
 * another writer in the guest uses space up faster than planned, the fill stops while
 * `keepBytes` are still free, instead of taking the filesystem to full under the guest's own
 * programs. Its last line says how many bytes it wrote, and why it stopped early if it did.
 *
 * One fill per filesystem: it holds a flock on the mount point (where the guest has flock), and
 * exits 75 when another holds it. With `watchInput`, it also ends itself when its input ends or
 * falls silent for 30 s: its caller (whose transport streams input and sends a newline every
 * 10 s) is gone, and neither sshd nor dropbear signals a command that has no terminal.
 */
const FILL = `f=$1 total=$2 keep=$(($3 / 1048576)) watch=$4 chunk=64 written=0 rc=0
dir=$(dirname -- "$f")
if command -v flock >/dev/null 2>&1; then
  exec 8<"$dir" && flock -n 8 || { echo "reclaim-fill: another fill runs here"; exit ${FILL_BUSY_EXIT}; }
fi
trap 'rm -f -- "$f"' EXIT
trap 'exit 143' HUP INT TERM
w=
if [ "$watch" = watch ]; then
  # A background job's input would be /dev/null: hand it ours through fd 7.
  exec 7<&0
  { while [ "$(timeout 30 head -c 1 | wc -c)" = 1 ]; do :; done; kill -TERM $$; } <&7 7<&- 8<&- >/dev/null 2>&1 &
  w=$!
fi
while [ "$written" -lt "$total" ]; do
  n=$chunk; [ $((total - written)) -lt "$n" ] && n=$((total - written))
  avail=$(df -Pk -- "$dir" | awk 'NR == 2 { print $4 }')
  room=$((\${avail:-0} / 1024 - keep))
  if [ "$room" -lt 1 ]; then echo "reclaim-fill: stopped at the reserve: $((\${avail:-0} / 1024)) MiB free"; break; fi
  [ "$room" -lt "$n" ] && n=$room
  out=$(dd if=/dev/zero of="$f" bs=1M count="$n" seek="$written" conv=notrunc,fsync 2>&1) || { rc=$?; echo "$out"; break; }
  written=$((written + n))
done
[ -n "$w" ] && kill "$w" 2>/dev/null
size=$(stat -c %s -- "$f" 2>/dev/null || echo 0)
rm -f -- "$f"; sync
echo "reclaim-fill: $size bytes copied"
exit "$rc"`;

export function fillArgv(mount: string, mib: number, keepBytes = 0, watchInput = false): string[] {
  if (!Number.isInteger(mib) || mib <= 0)
    throw new RangeError(`fill size must be a positive whole number of MiB, not ${mib}`);
  return shellScript(FILL, [
    fillFilePath(mount),
    String(mib),
    String(Math.max(0, Math.ceil(keepBytes))),
    watchInput ? "watch" : "",
  ]);
}

/** The fill stopped because the free space fell to the reserve: the MiB still free then. */
export function parseStoppedAtReserve(output: string): number | undefined {
  const m = /reclaim-fill: stopped at the reserve: (\d+) MiB free/.exec(output);
  return m ? Number(m[1]) : undefined;
}

/**
 * Removes fill files a lost connection left behind, except where a fill still runs (it holds the
 * mount point's flock): that one removes its own file when it ends. Prints `busy MOUNT` for each.
 */
export function removeFillLeftoversArgv(mounts: readonly string[]): string[] {
  return shellScript(
    `for m in "$@"; do
  if command -v flock >/dev/null 2>&1 && ! flock -n "$m" true 2>/dev/null; then echo "busy $m"; continue; fi
  rm -f -- "$m/${FILL_FILE}" || exit 1
done`,
    mounts,
  );
}

/**
 * Bytes the fill wrote: its own last line, or what dd reports (GNU dd says "104857600 bytes (105 MB, 100 MiB) copied"; busybox dd
 * only "100+0 records out", whole records of the fill's 1 MiB blocks (a partial one is not counted)).
 */
export function parseFilled(output: string): number | undefined {
  const own = /reclaim-fill: (\d+) bytes copied/.exec(output);
  if (own) return Number(own[1]);
  const bytes = /(\d+) bytes(?: \([^)]*\))? copied/.exec(output);
  if (bytes) return Number(bytes[1]);
  const records = /(\d+)\+\d+ records out/.exec(output);
  return records ? Number(records[1]) * MiB : undefined;
}

export type FillSize = { mib: number } | { skip: string };

/** The bytes a fill leaves free on a filesystem. */
export function reserveBytes(fs: Pick<GuestFilesystem, "sizeBytes">, reserve: Reserve): number {
  return reserve.kind === "bytes" ? reserve.bytes : Math.ceil(fs.sizeBytes * reserve.ratio);
}

/** How much to fill: the free space less the reserve, in whole MiB; nothing when that is too little. */
export function fillSize(fs: GuestFilesystem, reserve: Reserve): FillSize {
  const keep = reserveBytes(fs, reserve);
  const mib = Math.floor((fs.availableBytes - keep) / MiB);
  if (mib < 1) return { skip: `${fs.mount}: free space is within the reserve, nothing to fill` };
  return { mib };
}
