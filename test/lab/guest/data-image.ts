/**
 * Data disks for guest VMs, made on the host without booting anything: an ext4 filesystem that had
 * `fillMiB` of random files written and `deleteMiB` of them deleted, as a qcow2 that still
 * allocates the deleted data (exactly what reclaim gives back), plus one surviving file with a
 * known checksum. `mkfs.ext4 -d` populates the filesystem from a staging dir, `debugfs -w` deletes
 * (freeing the blocks without zeroing them), `qemu-img convert` makes the qcow2: no loop device,
 * no mount, no root needed.
 */
import { execFile } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" };

export interface DataImageOptions {
  /** Virtual size of the disk (and of the filesystem on it). */
  sizeMiB: number;
  /** Random data written, including what is then deleted (not counting the survivor). */
  fillMiB: number;
  /** How much of it is deleted again; at most fillMiB. */
  deleteMiB: number;
  /** Size of /data/keep.bin (default 4 MiB). */
  survivorMiB?: number;
  /** Size of each written file (default 16 MiB). */
  fileMiB?: number;
}

export interface DataImage {
  path: string;
  /** Where the surviving file is in the guest (the filesystem is mounted at /data). */
  survivorPath: string;
  survivorSha256: string;
  /** Bytes of file data deleted (still allocated in the image). */
  deletedBytes: number;
  /** Bytes of file data still in the filesystem, survivor included. */
  keptBytes: number;
  /** The qcow2's allocation on the host right after it was made (st_blocks × 512). */
  allocatedBytes: number;
  /** Names (in the filesystem's root) of the files still there, survivor excluded. */
  keptFiles: string[];
}

/** Bytes the file occupies on the host's disk (st_blocks × 512): what `du` counts. */
export function allocatedBytes(path: string): number {
  return statSync(path).blocks * 512;
}

/** Writes `mib` MiB of fresh random data to `path`; returns its sha256. */
function writeRandom(path: string, mib: number): string {
  const fd = openSync(path, "w");
  const hash = createHash("sha256");
  const buf = Buffer.alloc(MiB);
  try {
    for (let i = 0; i < mib; i++) {
      randomFillSync(buf);
      hash.update(buf);
      writeSync(fd, buf);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/** Splits `mib` into file sizes of at most `per` MiB. */
function sizes(mib: number, per: number): number[] {
  const out: number[] = [];
  for (let left = mib; left > 0; left -= per) out.push(Math.min(per, left));
  return out;
}

export async function makeDataImage(path: string, o: DataImageOptions): Promise<DataImage> {
  const survivorMiB = o.survivorMiB ?? 4;
  const fileMiB = o.fileMiB ?? 16;
  for (const [k, v] of Object.entries({ sizeMiB: o.sizeMiB, fillMiB: o.fillMiB, deleteMiB: o.deleteMiB })) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`makeDataImage: ${k} must be a whole number ≥ 0`);
  }
  if (o.deleteMiB > o.fillMiB) throw new Error("makeDataImage: deleteMiB exceeds fillMiB");
  // ext4's metadata and journal take a share; keep ~15% plus 16 MiB spare.
  if (o.fillMiB + survivorMiB > o.sizeMiB * 0.85 - 16) {
    throw new Error(`makeDataImage: ${o.fillMiB + survivorMiB} MiB of files do not fit in ${o.sizeMiB} MiB`);
  }
  mkdirSync(dirname(path), { recursive: true });
  const work = mkdtempSync(join(dirname(path), ".data-image-"));
  try {
    const stage = join(work, "root");
    mkdirSync(stage);
    const survivorSha256 = writeRandom(join(stage, "keep.bin"), survivorMiB);
    const deleted = sizes(o.deleteMiB, fileMiB).map((mib, i) => ({ name: `deleted-${i}.bin`, mib }));
    const kept = sizes(o.fillMiB - o.deleteMiB, fileMiB).map((mib, i) => ({ name: `kept-${i}.bin`, mib }));
    for (const f of [...deleted, ...kept]) writeRandom(join(stage, f.name), f.mib);

    const raw = join(work, "disk.raw");
    await execFileAsync(
      "mkfs.ext4",
      ["-q", "-F", "-m", "0", "-L", "reclaim-data", "-E", "nodiscard", "-d", stage, raw, `${o.sizeMiB}M`],
      { env: ENV, timeout: 120_000 },
    );
    rmSync(stage, { recursive: true, force: true });
    if (deleted.length > 0) {
      // debugfs's rm unlinks and releases the blocks; the data stays where it was.
      const script = join(work, "debugfs.cmd");
      writeFileSync(script, deleted.map((f) => `rm /${f.name}\n`).join(""));
      const r = await execFileAsync("debugfs", ["-w", "-f", script, raw], { env: ENV, timeout: 60_000 });
      // debugfs reports failures of single commands on stderr but still exits 0.
      const problems = r.stderr.split("\n").filter((l) => l.trim() && !/^debugfs \d/.test(l));
      if (problems.length > 0) throw new Error(`makeDataImage: debugfs: ${problems.join("\n")}`);
    }
    // The filesystem must be clean for the guest (and for reclaim's own fsck checks later).
    await execFileAsync("e2fsck", ["-f", "-n", raw], { env: ENV, timeout: 60_000 }).catch((e: unknown) => {
      const err = e as { stdout?: string; stderr?: string };
      throw new Error(`makeDataImage: e2fsck -fn found problems:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
    });
    rmSync(path, { force: true });
    await execFileAsync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, path], {
      env: ENV,
      timeout: 120_000,
    });
    return {
      path,
      survivorPath: "/data/keep.bin",
      survivorSha256,
      deletedBytes: o.deleteMiB * MiB,
      keptBytes: (o.fillMiB - o.deleteMiB + survivorMiB) * MiB,
      allocatedBytes: allocatedBytes(path),
      keptFiles: kept.map((f) => f.name),
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
