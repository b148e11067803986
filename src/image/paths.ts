/**
 * The names reclaim gives its own files beside an image. They are fixed per image so that a later
 * run (after a crash, a kill, a dropped connection) finds and finishes or removes them.
 */
import { posix } from "node:path";

export interface ImagePaths {
  image: string;
  dir: string;
  /** The rewritten image while it is being made and verified; same directory, so rename is atomic. */
  temp: string;
  /** What step a rewrite reached, written durably before each irreversible step. */
  journal: string;
  /** Present while reclaim has the image's guest shut down: a run killed then starts it again. */
  stopped: string;
  /** The detached conversion's output; locked while it runs (tasks/convert-worker.ts). */
  convertLog: string;
  /** The detached conversion's exit status, once it ended. */
  convertExit: string;
}

export function imagePaths(image: string): ImagePaths {
  const dir = posix.dirname(image);
  const base = posix.basename(image);
  return {
    image,
    dir,
    temp: posix.join(dir, `.${base}.reclaim-tmp`),
    journal: posix.join(dir, `.${base}.reclaim-journal`),
    stopped: posix.join(dir, `.${base}.reclaim-stopped`),
    convertLog: posix.join(dir, `.${base}.reclaim-convert.log`),
    convertExit: posix.join(dir, `.${base}.reclaim-convert.exit`),
  };
}

/** Where `keep_backup` keeps the original: a hard link, so keeping it costs no copy. */
export function backupPath(image: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${image}.reclaim-backup-${stamp}`;
}
