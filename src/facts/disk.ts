/**
 * Everything the planner needs to know about disk images on one host, read without changing
 * anything. The reads go out in batches (transport/batch.ts): three round trips for all the
 * disks of a host at the most, however many there are.
 */
import { posix } from "node:path";
import { qcow2CreateOptions } from "../image/create-options.js";
import { imagePaths } from "../image/paths.js";
import { type WorkerState, workerFilesOf } from "../tasks/convert-worker.js";
import { runBatch } from "../transport/batch.js";
import type { CommandResult, Transport } from "../transport/transport.js";
import { convertWorker } from "./convert-worker.js";
import type { Fact } from "./fact.js";
import { type FileContent, fileContent } from "./file-content.js";
import { type FileStatFact, fileStat } from "./file-stat.js";
import { type FsFree, fsFree } from "./fs-free.js";
import { type ImageInfo, imageInfoShared, imageProbe } from "./image-info.js";
import { type ImageMeasure, imageMeasure } from "./image-measure.js";
import { backingFilesIn, imageLocks } from "./image-users.js";
import { leftoverNames } from "./leftovers.js";

export interface DiskFacts {
  path: string;
  stat: FileStatFact;
  /** Set when a running process holds the image's lock. */
  inUse?: { message: string };
  info?: ImageInfo;
  measure?: ImageMeasure;
  free?: FsFree;
  temp: FileStatFact;
  /** The temporary image of a rewrite is locked: another process is converting this disk now. */
  tempInUse?: boolean;
  journal: FileContent;
  /** A detached conversion of this image that an earlier run started (its log file exists). */
  worker?: WorkerState;
  /** A run that shut the image's guest down for it was interrupted before starting it again. */
  stoppedByReclaim?: boolean;
  /** Images in the same directory whose backing file this is. */
  overlays?: string[];
  /** A fact that could not be read: the disk is left alone and this is said. */
  error?: string;
}

/** One fact to read in a batch, and what to do with its value. */
interface Read {
  argv: string[];
  accept(result: CommandResult): void;
}

function read<Args, Value>(
  fact: Fact<Args, Value>,
  args: Args,
  onValue: (value: Value) => void,
  onError: (message: string) => void,
): Read {
  return {
    argv: fact.argv(args),
    accept: (result) => {
      try {
        onValue(fact.parse(result, args));
      } catch (error) {
        onError((error as Error).message);
      }
    },
  };
}

async function runReads(transport: Transport, reads: readonly Read[]): Promise<void> {
  if (reads.length === 0) return;
  const results = await runBatch(
    transport,
    reads.map((r) => r.argv),
  );
  for (const [i, result] of results.entries()) reads[i]?.accept(result);
}

/** The facts of every path, in order. A path given twice is read once. */
export async function gatherDisksFacts(transport: Transport, paths: readonly string[]): Promise<DiskFacts[]> {
  const unique = [...new Set(paths)];
  const byPath = new Map<string, DiskFacts>();
  /** Why an image could not be opened; reported only when the file itself exists. */
  const probeErrors = new Map<string, string>();
  const failed = (facts: DiskFacts) => (message: string) => {
    facts.error ??= message;
  };

  // Round 1: what is there, and is the image locked (its info comes with it when it is not);
  // per directory, its free space and the leftovers of interrupted rewrites.
  const first: Read[] = [];
  const dirs = new Map<string, { free?: FsFree; leftovers?: Set<string>; backing?: Map<string, string> }>();
  for (const path of unique) {
    const facts: DiskFacts = {
      path,
      stat: { exists: false },
      temp: { exists: false },
      journal: { exists: false },
    };
    byPath.set(path, facts);
    const dir = imagePaths(path).dir;
    if (!dirs.has(dir)) {
      const entry: { free?: FsFree; leftovers?: Set<string>; backing?: Map<string, string> } = {};
      dirs.set(dir, entry);
      first.push(
        read(
          fsFree,
          { dir },
          (v) => (entry.free = v),
          () => {},
        ),
        read(
          leftoverNames,
          { dir },
          (v) => (entry.leftovers = v),
          () => {},
        ),
        read(
          backingFilesIn,
          { dir },
          (v) => (entry.backing = v),
          () => {},
        ),
      );
    }
    first.push(
      read(fileStat, { path }, (v) => (facts.stat = v), failed(facts)),
      read(
        imageProbe,
        { path },
        (v) => {
          if (v.inUse) facts.inUse = { message: v.lockMessage };
          else facts.info = v.info;
        },
        // A missing or unreadable file fails here too; the stat says which.
        (message) => probeErrors.set(path, message),
      ),
    );
  }
  await runReads(transport, first);

  // Round 2: read-only info of locked images; the leftovers found, and whether a leftover
  // temporary image is in use (another runner converting right now).
  const second: Read[] = [];
  const lockedByOthers = new Set<DiskFacts>();
  for (const facts of byPath.values()) {
    const p = imagePaths(facts.path);
    const dir = dirs.get(p.dir);
    if (dir?.free) facts.free = dir.free;
    // Without the listing, look for both files: missing ones are simply absent.
    const listed = (file: string) => !dir?.leftovers || dir.leftovers.has(posix.basename(file));
    if (listed(p.temp)) {
      second.push(
        read(fileStat, { path: p.temp }, (v) => (facts.temp = v), failed(facts)),
        read(
          imageProbe,
          { path: p.temp },
          (v) => (facts.tempInUse = v.inUse),
          () => {},
        ),
      );
    }
    // Only a listing can tell (no probe per image): without one, the marker is not looked for.
    if (dir?.leftovers?.has(posix.basename(p.stopped))) facts.stoppedByReclaim = true;
    if (dir?.leftovers?.has(posix.basename(p.convertLog)))
      second.push(read(convertWorker, workerFilesOf(p), (v) => (facts.worker = v), failed(facts)));
    if (listed(p.journal))
      second.push(read(fileContent, { path: p.journal }, (v) => (facts.journal = v), failed(facts)));
    const overlays = [...(dir?.backing ?? [])].filter(([, b]) => b === facts.path).map(([f]) => f);
    if (overlays.length > 0) facts.overlays = overlays;
    // After round 1's probe, which takes these locks itself: now only other processes hold them.
    if (facts.stat.exists && !facts.inUse)
      second.push(
        read(
          imageLocks,
          { path: facts.path },
          (v) => {
            if (v.held) lockedByOthers.add(facts);
          },
          () => {},
        ),
      );
    if (facts.inUse)
      second.push(read(imageInfoShared, { path: facts.path }, (v) => (facts.info = v), failed(facts)));
  }
  await runReads(transport, second);
  // A conversion of ours that ended between the temporary image's probe and the read of its
  // status (one batch, read at once) leaves a stale "in use": its qemu-img had exited by the
  // time the status was written. Probe those again.
  const ended = [...byPath.values()].filter(
    (f) => f.tempInUse && f.worker !== undefined && f.worker.state !== "running",
  );
  await runReads(
    transport,
    ended.map((facts) =>
      read(
        imageProbe,
        { path: imagePaths(facts.path).temp },
        (v) => (facts.tempInUse = v.inUse),
        () => {},
      ),
    ),
  );
  for (const facts of lockedByOthers) {
    // Our own detached conversion reads the image under those locks: that is no other user.
    if (facts.worker?.state === "running") continue;
    facts.inUse = {
      message:
        "another process has it open with QEMU's locks (a VM on an overlay whose backing file it is, say)",
    };
  }

  // Round 3: how large each rewritten image would be (needs the format and options from info).
  const third: Read[] = [];
  for (const facts of byPath.values()) {
    if (!facts.stat.exists || facts.stat.type !== "file") continue;
    if (!facts.info) {
      facts.error ??= probeErrors.get(facts.path) ?? "cannot read the image";
      continue;
    }
    if (facts.info.format === "qcow2" && !facts.info.encrypted) {
      const args = {
        path: facts.path,
        format: facts.info.format,
        options: qcow2CreateOptions(facts.info.options),
      };
      third.push(read(imageMeasure, args, (v) => (facts.measure = v), failed(facts)));
    }
  }
  await runReads(transport, third);

  return paths.map((p) => byPath.get(p) as DiskFacts);
}
