/**
 * Who else uses an image, beyond the lock probe: processes holding QEMU's lock bytes on the file
 * (a VM whose overlay has this image as its backing file holds them while only reading it), and
 * qcow2 images in the same directory whose backing file it is.
 */
import { posix } from "node:path";
import { shellScript } from "../transport/quote.js";
import { type CommandResult, describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

/** QEMU's lock bytes: 100 + permission bit, 200 + permission bit (block/file-posix.c). */
const QEMU_LOCK_BYTES = /^(1|2)\d\d$/;

export const imageLocks: Fact<{ path: string }, { held: boolean }> = {
  name: "image locks",
  argv: ({ path }) => shellScript('stat -c "%D %i" -- "$1" && cat /proc/locks', [path]),
  parse: parseImageLocks,
};

export function parseImageLocks(result: CommandResult): { held: boolean } {
  if (result.exitCode !== 0) throw new Error(describeFailure(result));
  const [first = "", ...lines] = result.stdout.split("\n");
  const [devHex = "", ino = ""] = first.trim().split(" ");
  const dev = Number.parseInt(devHex, 16);
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  const id = `${hex((dev >> 8) & 0xfff)}:${hex((dev & 0xff) | ((dev >> 12) & 0xfff00))}:${ino}`;
  const held = lines.some((line) => {
    const f = line.trim().split(/\s+/);
    // "1: OFDLCK ADVISORY READ -1 fe:00:2212790 201 201"
    return f[1] === "OFDLCK" && f[5] === id && QEMU_LOCK_BYTES.test(f[6] ?? "");
  });
  return { held };
}

/** For each qcow2 file of a directory, its backing file as qemu-img reads it (-U: no lock, no write). */
export const backingFilesIn: Fact<{ dir: string }, Map<string, string>> = {
  name: "backing files in the directory",
  argv: ({ dir }) =>
    shellScript(
      `for f in "$1"/* "$1"/.[!.]*; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  [ "$(head -c 3 -- "$f" 2>/dev/null)" = QFI ] || continue
  printf '%s\\t' "$f"; qemu-img info -U --output=json -- "$f" 2>/dev/null | tr -d '\\n'; echo
done`,
      [dir],
    ),
  parse: (result, { dir }) => {
    if (result.exitCode !== 0) throw new Error(describeFailure(result));
    const map = new Map<string, string>();
    for (const line of result.stdout.split("\n")) {
      const tab = line.indexOf("\t");
      if (tab < 0) continue;
      try {
        const info = JSON.parse(line.slice(tab + 1)) as { "backing-filename"?: string };
        const backing = info["backing-filename"];
        if (backing) map.set(line.slice(0, tab), posix.resolve(dir, backing));
      } catch {
        // Not readable as an image: not an overlay we can name.
      }
    }
    return map;
  },
};
