/**
 * A guest's data disk as real ones end up: an ext4 filesystem whose files were written and then
 * deleted, as a qcow2 that still allocates the deleted data on the host (exactly what reclaim
 * gives back), plus one surviving file with a known sha256. Made on the host without root, loop
 * device or mount: `mkfs.ext4 -d` fills the filesystem from a staging dir, `debugfs -w` deletes
 * (freeing blocks without zeroing them), `qemu-img convert` makes the qcow2.
 */
import { createHash, randomFillSync } from "node:crypto";
import { mkdir, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { RunError } from "../errors.js";
import { describeFailure, type Transport } from "../transport/transport.js";
import { locate } from "./host-tools.js";

const MiB = 1024 * 1024;

export interface DeletedFilesImageSpec {
  path: string;
  /** Virtual size of the disk and of the filesystem on it. */
  sizeMiB: number;
  /** Written, then deleted again. */
  deletedMiB: number;
  /** Size of the file that stays. */
  survivorMiB: number;
}

export interface DeletedFilesImage {
  path: string;
  /** The surviving file's name in the filesystem's root. */
  survivor: string;
  survivorSha256: string;
}

const SURVIVOR = "keep.bin";
const FILE_MiB = 20;

/** Writes `mib` MiB from `chunk` (1 MiB, refreshed by `next`) to `path`; returns the data's sha256. */
async function writeData(path: string, mib: number, next: (chunk: Buffer) => void): Promise<string> {
  const file = await open(path, "w");
  const hash = createHash("sha256");
  const chunk = Buffer.alloc(MiB);
  try {
    for (let i = 0; i < mib; i++) {
      next(chunk);
      hash.update(chunk);
      await file.write(chunk);
    }
  } finally {
    await file.close();
  }
  return hash.digest("hex");
}

export async function makeDeletedFilesImage(
  transport: Transport,
  spec: DeletedFilesImageSpec,
): Promise<DeletedFilesImage> {
  const must = async ([program = "", ...args]: string[]) => {
    // e2fsprogs lives in sbin, which a user's PATH may lack.
    const r = await transport.run({ argv: [locate(program) ?? program, ...args], timeoutMs: 120_000 });
    if (r.exitCode !== 0) throw new RunError(`making the demo's data disk: ${describeFailure(r)}`);
    return r;
  };
  const work = await mkdtemp(join(dirname(spec.path), ".data-image-"));
  try {
    const stage = join(work, "root");
    await mkdir(stage);
    const survivorSha256 = await writeData(join(stage, SURVIVOR), spec.survivorMiB, (c) => randomFillSync(c));
    // The deleted files only need to be data (not zeros, which mkfs would leave as holes): one
    // random MiB written again and again costs no entropy.
    const pattern = randomFillSync(Buffer.alloc(MiB));
    const deleted: string[] = [];
    for (let left = spec.deletedMiB, i = 0; left > 0; left -= FILE_MiB, i++) {
      const name = `deleted-${String(i).padStart(2, "0")}.bin`;
      await writeData(join(stage, name), Math.min(FILE_MiB, left), (c) => pattern.copy(c));
      deleted.push(name);
    }
    const raw = join(work, "disk.raw");
    await must([
      "mkfs.ext4",
      "-q",
      "-F",
      "-m",
      "0",
      "-L",
      "reclaim-demo",
      "-E",
      "nodiscard",
      "-d",
      stage,
      raw,
      `${spec.sizeMiB}M`,
    ]);
    await rm(stage, { recursive: true, force: true });
    // debugfs's rm unlinks and releases the blocks; the data stays where it was.
    const script = join(work, "debugfs.cmd");
    await writeFile(script, deleted.map((name) => `rm /${name}\n`).join(""));
    const removed = await must(["debugfs", "-w", "-f", script, raw]);
    // debugfs reports a failed command on stderr but still exits 0.
    const problems = removed.stderr.split("\n").filter((l) => l.trim() && !/^debugfs \d/.test(l));
    if (problems.length > 0)
      throw new RunError(`making the demo's data disk: debugfs: ${problems.join("; ")}`);
    await must(["e2fsck", "-f", "-n", raw]);
    await must(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, spec.path]);
    return { path: spec.path, survivor: SURVIVOR, survivorSha256 };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
