/**
 * The argv of every command the rewrite runs on a hypervisor. Pure, so tests can read exactly what
 * would run. Data goes in as separate arguments, never pasted into a shell string.
 */
import type { ConvertSpec } from "../plan/plan.js";
import { shellScript } from "../transport/quote.js";

export function convertArgv(spec: ConvertSpec, source: string, target: string): string[] {
  return [
    "qemu-img",
    "convert",
    "-p",
    // Never -U here: convert must fail if anything holds the image.
    "-f",
    spec.sourceFormat,
    "-O",
    spec.targetFormat,
    ...(spec.options.length ? ["-o", spec.options.join(",")] : []),
    ...(spec.bitmaps ? ["--bitmaps"] : []),
    ...(spec.compress ? ["-c"] : []),
    source,
    target,
  ];
}

export function compareArgv(format: string, original: string, candidate: string): string[] {
  // Not -s: strict mode also compares allocation, which is exactly what we changed.
  return ["qemu-img", "compare", "-f", format, "-F", format, original, candidate];
}

export function checkArgv(format: string, image: string): string[] {
  return ["qemu-img", "check", "-f", format, image];
}

export function fsyncArgv(path: string): string[] {
  return ["sync", "--", path];
}

export function copyAttributesArgv(from: string, to: string): string[] {
  // --attributes-only leaves the destination's data alone; no timestamps, so identity stays put.
  return ["cp", "--attributes-only", "--preserve=mode,ownership,xattr", "--", from, to];
}

export function removeArgv(paths: readonly string[]): string[] {
  return ["rm", "-f", "--", ...paths];
}

/** A hard link to the original; a link that already points at it (an earlier try) is fine. */
export function keepBackupArgv(image: string, backup: string): string[] {
  return shellScript('[ "$1" -ef "$2" ] || ln -- "$1" "$2"', [image, backup]);
}

/** rename(2) within one directory: atomic, the path always holds a whole image. */
export function renameArgv(from: string, to: string): string[] {
  return ["mv", "-T", "--", from, to];
}

/** Write a small file durably and atomically: a reader sees the old or the new content, never half. */
export function writeFileAtomicArgv(path: string): string[] {
  return shellScript(
    'cat > "$1.new" && sync -- "$1.new" && mv -f -- "$1.new" "$1" && sync -- "$(dirname -- "$1")"',
    [path],
  );
}

/** Progress lines of `qemu-img convert -p`: `    (12.34/100%)\r`. Returns the last percentage seen. */
export function parseConvertProgress(chunk: string): number | undefined {
  const matches = [...chunk.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)];
  const last = matches.at(-1);
  return last ? Number(last[1]) : undefined;
}
