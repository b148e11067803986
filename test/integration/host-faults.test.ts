/**
 * Faults of the host filesystem an image lives on, on real images with the built CLI and the real
 * qemu-img: a filesystem that fills up while qemu-img converts, a read-only one, an image replaced
 * between plan and apply or while apply runs, and the backing file of another image.
 *
 * Covered elsewhere, not repeated here (rewrite-local.test.ts): a filesystem too full at plan time
 * ("refuses before writing anything when the filesystem lacks room for the new image") and an image
 * a running process holds ("refuses an image that a running QEMU process holds").
 *
 * To act while qemu-img converts, on a machine however busy, the run under test finds a `qemu-img`
 * first in its PATH that wraps the real one: the conversion into the test's temporary image stops
 * itself before it begins, then runs rate-limited (qemu-img's own -r) once let go; the test stops
 * it with SIGSTOP when it has written part of the image, makes its change, and lets it finish with
 * SIGCONT. Needs root: it mounts small filesystems, and always unmounts them.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, ensureBuilt, runCliProcess, startCli } from "../helpers/cli.js";
import {
  allocated,
  bloatedImage,
  copySparse,
  identical,
  MiB,
  randomImage,
  tempDir,
  writeLocalInventory,
  writePlaybook,
} from "../helpers/images.js";

const POLICY = "min_reclaimable: 1MiB\n    min_ratio: 10%\n    zero: none";

// ---- cleanup: every undo runs, even after one fails, and mounts are swept once more at the end ----

const undos: (() => void)[] = [];
const mounted = new Set<string>();

function defer(undo: () => void): void {
  undos.push(undo);
}

afterEach(() => {
  const errors: unknown[] = [];
  // Last in, first out: a process is let go and killed before its filesystem is unmounted, and
  // the filesystem is unmounted before its directory is removed.
  for (const undo of undos.splice(0).reverse()) {
    try {
      undo();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, "cleanup failed");
});

afterAll(() => {
  for (const mnt of mounted) unmount(mnt);
});

function workspace(): { dir: string; inventory: string } {
  const t = tempDir("reclaim-host-faults-");
  defer(t.cleanup);
  return { dir: t.dir, inventory: writeLocalInventory(t.dir) };
}

function unmount(mnt: string): void {
  if (!mounted.has(mnt)) return;
  try {
    execFileSync("umount", [mnt], { stdio: "pipe" });
  } catch {
    // Busy (a process still inside): detach it now, the kernel finishes when the last user leaves.
    execFileSync("umount", ["-l", mnt], { stdio: "pipe" });
  }
  mounted.delete(mnt);
}

type FsKind = "tmpfs" | "ext4";

/** A filesystem of `sizeMiB` mounted at `parent/fs`, unmounted after the test whatever happens. */
function smallFilesystem(kind: FsKind, parent: string, sizeMiB: number): string {
  const mnt = join(parent, "fs");
  mkdirSync(mnt);
  if (kind === "tmpfs") {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m`, "tmpfs", mnt]);
  } else {
    const file = join(parent, "fs.ext4");
    execFileSync("truncate", ["-s", `${sizeMiB}M`, file]);
    // -m 0: no blocks reserved for root, so "available" is all there is, for reclaim and for us.
    execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", file]);
    execFileSync("mount", ["-o", "loop", file, mnt]);
  }
  mounted.add(mnt);
  defer(() => unmount(mnt));
  return mnt;
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/**
 * Takes every free byte of the filesystem at `mnt`, as another writer would, in as many files as
 * it takes (ext4 needs blocks for the extents of a large file, so one file of "all that is free"
 * does not fit). Returns the files.
 */
function fillUp(mnt: string): string[] {
  const files: string[] = [];
  for (let size = freeBytes(mnt); size >= 4096; ) {
    const file = join(mnt, `filler-${files.length}`);
    try {
      execFileSync("fallocate", ["-l", String(size), file], { stdio: "pipe" });
      files.push(file);
      size = freeBytes(mnt);
    } catch {
      rmSync(file, { force: true });
      size = Math.floor(size / 2 / 4096) * 4096;
    }
  }
  return files;
}

// ---- what a test compares ----

interface Identity {
  ino: number;
  mtimeMs: number;
  size: number;
  blocks: number;
}

function identity(path: string): Identity {
  const s = lstatSync(path);
  return { ino: s.ino, mtimeMs: s.mtimeMs, size: s.size, blocks: s.blocks };
}

/** Whether some process holds QEMU's lock bytes on the file (OFD locks, as /proc/locks lists them). */
function heldByQemu(path: string): boolean {
  const { dev, ino } = statSync(path);
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  // Userspace dev_t: major in bits 8-19, minor in bits 0-7 and 20-31.
  const id = `${hex((dev >> 8) & 0xfff)}:${hex((dev & 0xff) | ((dev >> 12) & 0xfff00))}:${ino}`;
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .some((line) => line.includes(" OFDLCK ") && line.includes(` ${id} `));
}

/** reclaim's own files (temporary image, journal, their `.new`), wherever a run left them. */
function reclaimFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes(".reclaim-"));
}

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

function apply(inventory: string, playbook: string): Promise<CliRun> {
  return runCliProcess(["apply", "--yes", "--no-log", "-i", inventory, playbook]);
}

// ---- acting while qemu-img converts ----

/** Rate of a conversion the test pauses: seconds, not milliseconds, to stop it mid-way. */
const PAUSED_RATE = "32M";

/**
 * A directory to put first in reclaim's PATH, holding a `qemu-img` around the real one: a
 * conversion into `temp` stops itself before it begins (so the test never races to catch it), and
 * once let go runs at PAUSED_RATE (qemu-img's own -r), so that the test can stop it mid-way however
 * busy the machine is. Every other qemu-img command, and every other conversion, runs unchanged.
 */
function qemuImgThatWaits(dir: string, temp: string): NodeJS.ProcessEnv {
  const real = execFileSync("sh", ["-c", "command -v qemu-img"], { encoding: "utf8" }).trim();
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const quoted = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;
  writeFileSync(
    join(bin, "qemu-img"),
    `#!/bin/sh
# The qemu-img of reclaim's host-faults test (see qemuImgThatWaits there).
if [ "$1" = convert ]; then
  for arg; do
    if [ "$arg" = ${quoted(temp)} ]; then
      kill -STOP $$
      shift
      exec ${quoted(real)} convert -r ${PAUSED_RATE} "$@"
    fi
  done
fi
exec ${quoted(real)} "$@"
`,
    { mode: 0o755 },
  );
  return { PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}` };
}

/** The conversion writing `temp` (the test's wrapper, then the real qemu-img it becomes). */
function convertWriting(temp: string): number | undefined {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      // qemu-img itself, or the shell running the wrapper; not a shell that passes it arguments.
      const at = argv.findIndex((arg) => basename(arg) === "qemu-img");
      if ((at === 0 || at === 1) && argv[at + 1] === "convert" && argv.includes(temp)) return Number(name);
    } catch {
      // It ended while we looked.
    }
  }
  return undefined;
}

function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/**
 * Waits for reclaim's conversion into `temp` (run through qemuImgThatWaits) to stop itself, lets
 * it go on until it has written `atLeast` bytes, and stops it there. Returns a function that lets
 * it go on; after the test, a conversion still writing `temp` is let go and killed, so that its
 * filesystem can be unmounted.
 */
async function pauseConversion(
  cli: ChildProcess,
  temp: string,
  atLeast: number,
): Promise<{ pid: number; resume: () => void }> {
  const deadline = Date.now() + 60_000;
  const running = () => cli.exitCode === null && cli.signalCode === null;
  let pid: number | undefined;
  while (pid === undefined || processState(pid) !== "T") {
    if (!running()) throw new Error(`reclaim ended before its conversion began (exit ${cli.exitCode})`);
    if (Date.now() > deadline)
      throw new Error("no conversion stopped itself: does reclaim still run qemu-img through PATH?");
    await sleep(5);
    pid = convertWriting(temp);
  }
  const converting = pid;
  let resumed = false;
  const resume = () => {
    if (resumed) return;
    resumed = true;
    if (convertWriting(temp) === converting) process.kill(converting, "SIGCONT");
  };
  defer(() => {
    if (convertWriting(temp) !== converting) return;
    process.kill(converting, "SIGCONT");
    process.kill(converting, "SIGKILL");
  });

  process.kill(converting, "SIGCONT");
  while (!existsSync(temp) || allocated(temp) < atLeast) {
    if (convertWriting(temp) !== converting) throw new Error("the conversion ended before it was paused");
    if (Date.now() > deadline) throw new Error(`the conversion did not write ${atLeast} bytes`);
    await sleep(5);
  }
  process.kill(converting, "SIGSTOP");
  while (processState(converting) !== "T") {
    if (convertWriting(temp) !== converting) throw new Error("the conversion ended before it was paused");
    await sleep(1);
  }
  return { pid: converting, resume };
}

/** Starts reclaim; kills it after the test if it is still running then. */
function startApply(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; done: Promise<CliRun> } {
  const started = startCli(args, env);
  defer(() => {
    if (started.child.exitCode === null && started.child.signalCode === null) started.child.kill("SIGKILL");
  });
  return started;
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error("these tests need root: they mount filesystems");
  ensureBuilt();
}, 120_000);

// ---- 1. the filesystem fills up while qemu-img converts ----

describe.each<FsKind>(["ext4", "tmpfs"])("a %s filesystem that fills up during the conversion", (kind) => {
  it("fails the disk with exit 2, keeps the original identical, leaves nothing behind; once freed, a re-run completes", async () => {
    const { dir, inventory } = workspace();
    // 192 MiB of random data with a quarter freed inside: the new image takes about 144 MiB, and
    // with reclaim's 64 MiB margin needs about 208 MiB; the filesystem has about 250 MiB free.
    const mnt = smallFilesystem(kind, dir, 448);
    const image = join(mnt, "vm.qcow2");
    randomImage(image, 192, 1024);
    const pristine = join(dir, "pristine.qcow2");
    copySparse(image, pristine);
    const before = identity(image);
    const playbook = writePlaybook(dir, [image], POLICY);

    const plan = await runCliProcess(["plan", "--detailed-exitcode", "--no-log", "-i", inventory, playbook]);
    expect(plan.code, `enough room at plan time\n${shown(plan)}`).toBe(2);
    expect(plan.stdout).toMatch(/rewrite: would give back/);

    const temp = join(mnt, ".vm.qcow2.reclaim-tmp");
    const { child, done } = startApply(
      ["apply", "--yes", "--no-log", "-i", inventory, playbook],
      qemuImgThatWaits(dir, temp),
    );
    const convert = await pauseConversion(child, temp, 16 * MiB);
    // Another writer takes every free byte while qemu-img is stopped mid-way.
    const written = allocated(temp);
    const fillers = fillUp(mnt);
    expect(freeBytes(mnt)).toBeLessThan(MiB);
    convert.resume();
    const run = await done;

    expect(run.code, shown(run)).toBe(2);
    expect(written).toBeLessThan(140 * MiB); // it was stopped in the middle, not at the end
    // Soft: a wrong message must not hide what the checks below find.
    expect
      .soft(run.stdout)
      .toMatch(
        /^failed +localhost vm \S*vm\.qcow2: convert failed: the host filesystem filled up during the conversion: [\d.]+ \S+ free of [\d.]+ \S+, the new image needed about [\d.]+ \S+ .*No space left on device.* \(the original is untouched\)$/m,
      );
    expect(run.stdout).toMatch(/failed=1/);
    expect(identity(image)).toEqual(before);
    expect(identical(pristine, image)).toBe(true);
    // The temporary image and the journal must go at once (they hold the space and would be
    // resumed); reclaim's other files may wait for the next run, but should go now too.
    expect(readdirSync(mnt)).not.toContain(".vm.qcow2.reclaim-tmp");
    expect(readdirSync(mnt)).not.toContain(".vm.qcow2.reclaim-journal");
    expect.soft(reclaimFiles(mnt), "left after the failed run").toEqual([]);

    for (const filler of fillers) rmSync(filler);
    const rerun = await apply(inventory, playbook);
    expect(rerun.code, shown(rerun)).toBe(0);
    expect(rerun.stdout).toMatch(/changed=1/);
    expect(identical(pristine, image)).toBe(true);
    expect(allocated(image)).toBeLessThan(before.blocks * 512);
    expect(reclaimFiles(mnt)).toEqual([]);
  }, 120_000);
});

// ---- 3. a read-only filesystem ----

describe("an image on a read-only filesystem", { timeout: 60_000 }, () => {
  const readOnly: [string, (dir: string) => string][] = [
    [
      "its own filesystem remounted read-only",
      (dir) => {
        const mnt = smallFilesystem("ext4", dir, 256);
        bloatedImage(join(mnt, "vm.qcow2"), { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
        execFileSync("mount", ["-o", "remount,ro", mnt]);
        return mnt;
      },
    ],
    [
      "a read-only bind mount of its directory",
      (dir) => {
        const images = join(dir, "images");
        mkdirSync(images);
        bloatedImage(join(images, "vm.qcow2"), { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
        const mnt = join(dir, "ro");
        mkdirSync(mnt);
        execFileSync("mount", ["--bind", images, mnt]);
        mounted.add(mnt);
        defer(() => unmount(mnt));
        execFileSync("mount", ["-o", "remount,bind,ro", mnt]);
        return mnt;
      },
    ],
  ];

  it.each(readOnly)(
    "on %s: refused or failed with the reason, never changed, nothing left",
    async (_, make) => {
      const { dir, inventory } = workspace();
      const mnt = make(dir);
      const image = join(mnt, "vm.qcow2");
      const pristine = join(dir, "pristine.qcow2");
      copySparse(image, pristine);
      const before = identity(image);

      const run = await apply(inventory, writePlaybook(dir, [image], POLICY));
      // Today the plan does not know the filesystem is read-only: the disk fails at its first write
      // (exit 2). Refusing it at plan time (skipped, exit 0) would be as good; both must say why.
      if (run.code === 0) {
        expect(run.stdout, shown(run)).toMatch(/skipped=1/);
        expect(run.stdout).toMatch(/^skipped +localhost vm \S*vm\.qcow2: .*read-only/im);
      } else {
        expect(run.code, shown(run)).toBe(2);
        expect(run.stdout).toMatch(
          /^failed +localhost vm \S*vm\.qcow2: convert failed: .*Read-only file system.* \(the original is untouched\)$/m,
        );
      }
      expect(identity(image)).toEqual(before);
      expect(identical(pristine, image)).toBe(true);
      expect(reclaimFiles(mnt)).toEqual([]);
    },
  );
});

// ---- 4. the image is replaced between plan and apply, or while apply runs ----

describe("an image replaced after the plan was made", { timeout: 60_000 }, () => {
  function saved() {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
    const playbook = writePlaybook(dir, [image], POLICY);
    const plan = join(dir, "plan.json");
    return { dir, inventory, image, playbook, plan };
  }

  it("by another image with the same size and mtime: the saved plan is stale, nothing is touched", async () => {
    const { dir, inventory, image, playbook, plan } = saved();
    const made = await runCliProcess(["plan", "--no-log", "-i", inventory, playbook, "--out", plan]);
    expect(made.code, shown(made)).toBe(0);
    // Different content in place (same clusters, so the same size), then the same mtime: only the
    // inode tells it is another file.
    const other = join(dir, "other.qcow2");
    copySparse(image, other);
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x33 200M 1M", other], { stdio: "ignore" });
    const { atime, mtime } = statSync(image);
    utimesSync(other, atime, mtime);
    expect(statSync(other).size).toBe(statSync(image).size);
    const otherPristine = join(dir, "other-pristine.qcow2");
    copySparse(other, otherPristine);
    renameSync(other, image);
    const now = identity(image);

    const run = await runCliProcess(["apply", "--no-log", plan]);
    expect(run.code, shown(run)).toBe(1);
    expect(run.stderr).toContain("the saved plan is stale; nothing was changed");
    expect(run.stderr).toContain(
      `${image} changed since the plan was made: it is another file (device or inode)`,
    );
    expect(run.stderr).not.toMatch(/modified since|size /);
    expect(identity(image)).toEqual(now);
    expect(identical(otherPristine, image)).toBe(true);
    expect(reclaimFiles(dir)).toEqual([]);
  });

  it("by a symbolic link to it: the saved plan is stale, neither the link nor the image is touched", async () => {
    const { dir, inventory, image, playbook, plan } = saved();
    const made = await runCliProcess(["plan", "--no-log", "-i", inventory, playbook, "--out", plan]);
    expect(made.code, shown(made)).toBe(0);
    const real = join(dir, "real");
    mkdirSync(real);
    const moved = join(real, "vm.qcow2");
    renameSync(image, moved);
    symlinkSync(moved, image);
    const [link, target] = [identity(image), identity(moved)];
    const pristine = join(dir, "pristine.qcow2");
    copySparse(moved, pristine);

    const run = await runCliProcess(["apply", "--no-log", plan]);
    expect(run.code, shown(run)).toBe(1);
    expect(run.stderr).toContain("the saved plan is stale; nothing was changed");
    expect(run.stderr).toContain(`${image} can no longer be identified as the planned image`);
    expect(lstatSync(image).isSymbolicLink()).toBe(true);
    expect([identity(image), identity(moved)]).toEqual([link, target]);
    expect(identical(pristine, moved)).toBe(true);
    expect([...reclaimFiles(dir), ...reclaimFiles(real)]).toEqual([]);
  });
});

describe("an image replaced while apply converts it", { timeout: 120_000 }, () => {
  /**
   * A saved plan is applied; while its qemu-img is stopped mid-way, `replace` puts something else
   * at the image's path. Returns the run and what the test needs to check.
   */
  async function replaceDuringConversion(replace: (image: string, dir: string) => void) {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    randomImage(image, 128, 512);
    const pristine = join(dir, "pristine.qcow2");
    copySparse(image, pristine);
    const plan = join(dir, "plan.json");
    const made = await runCliProcess([
      "plan",
      "--no-log",
      "-i",
      inventory,
      writePlaybook(dir, [image], POLICY),
      "--out",
      plan,
    ]);
    expect(made.code, shown(made)).toBe(0);

    const temp = join(dir, ".vm.qcow2.reclaim-tmp");
    const { child, done } = startApply(["apply", "--no-log", plan], qemuImgThatWaits(dir, temp));
    const convert = await pauseConversion(child, temp, 8 * MiB);
    replace(image, dir);
    const replaced = identity(image);
    convert.resume();
    const run = await done;
    return { dir, image, pristine, replaced, run };
  }

  it("by a copy with the same content: the swap refuses it, exit 2, the copy stays, nothing left", async () => {
    const { dir, image, pristine, replaced, run } = await replaceDuringConversion((img, d) => {
      const copy = join(d, "copy.qcow2");
      copySparse(img, copy);
      renameSync(copy, img);
    });
    expect(run.code, shown(run)).toBe(2);
    expect(run.stdout).toMatch(
      /^failed +localhost vm \S*vm\.qcow2: swap failed: the image changed since it was copied; not replaced \(the original is untouched\)$/m,
    );
    expect(identity(image)).toEqual(replaced);
    expect(identical(pristine, image)).toBe(true);
    expect(reclaimFiles(dir)).toEqual([]);
  });

  it("by a symbolic link to the moved image: the swap refuses it, the link and the image stay", async () => {
    let moved = "";
    let target: Identity | undefined;
    const { dir, image, pristine, replaced, run } = await replaceDuringConversion((img, d) => {
      mkdirSync(join(d, "real"));
      moved = join(d, "real", "vm.qcow2");
      renameSync(img, moved);
      symlinkSync(moved, img);
      target = identity(moved);
    });
    expect(run.code, shown(run)).toBe(2);
    expect(run.stdout).toMatch(
      /^failed +localhost vm \S*vm\.qcow2: swap failed: the image changed since it was copied/m,
    );
    expect(lstatSync(image).isSymbolicLink()).toBe(true);
    expect([identity(image), identity(moved)]).toEqual([replaced, target]);
    expect(identical(pristine, moved)).toBe(true);
    expect([...reclaimFiles(dir), ...reclaimFiles(join(dir, "real"))]).toEqual([]);
  });

  it("by another image: verification catches the difference, exit 2, the other image stays", async () => {
    const { dir, image, replaced, run } = await replaceDuringConversion((img, d) => {
      const other = join(d, "other.qcow2");
      bloatedImage(other, { virtualMiB: 512, writtenMiB: 16, freedMiB: 0 });
      renameSync(other, img);
    });
    expect(run.code, shown(run)).toBe(2);
    expect(run.stdout).toMatch(
      /^failed +localhost vm \S*vm\.qcow2: verify failed: the new image differs from the original: .* \(the original is untouched\)$/m,
    );
    expect(identity(image)).toEqual(replaced);
    expect(reclaimFiles(dir)).toEqual([]);
  });
});

// ---- 5. the backing file of another image ----

describe("the backing file of another image", { timeout: 120_000 }, () => {
  /** A bloated base, an overlay on it with data of its own, and a reference copy of the chain. */
  function chain() {
    const { dir, inventory } = workspace();
    const base = join(dir, "base.qcow2");
    const overlay = join(dir, "overlay.qcow2");
    bloatedImage(base, { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay]);
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x77 88M 4M", overlay], { stdio: "ignore" });
    const refs = join(dir, "refs");
    mkdirSync(refs);
    const [pristineBase, pristineOverlay] = [join(refs, "base.qcow2"), join(refs, "overlay.qcow2")];
    copySparse(base, pristineBase);
    copySparse(overlay, pristineOverlay);
    execFileSync("qemu-img", [
      "rebase",
      "-u",
      "-f",
      "qcow2",
      "-b",
      pristineBase,
      "-F",
      "qcow2",
      pristineOverlay,
    ]);
    const playbook = writePlaybook(dir, [base, overlay], POLICY);
    return { dir, inventory, base, overlay, pristineOverlay, playbook };
  }

  function expectChainIntact(c: ReturnType<typeof chain>, before: { base: Identity; overlay: Identity }) {
    expect(identity(c.base)).toEqual(before.base);
    expect(identity(c.overlay)).toEqual(before.overlay);
    expect(identical(c.pristineOverlay, c.overlay)).toBe(true);
    execFileSync("qemu-img", ["check", "-q", "-f", "qcow2", c.overlay]);
    expect(reclaimFiles(c.dir)).toEqual([]);
  }

  it("of an overlay nothing has open: the base is refused as well as the overlay", async () => {
    const c = chain();
    const before = { base: identity(c.base), overlay: identity(c.overlay) };
    const run = await apply(c.inventory, c.playbook);
    expect(run.stdout, shown(run)).toMatch(/^skipped +localhost vm \S*overlay\.qcow2: has a backing file/m);
    expect(run.stdout).toMatch(/^skipped +localhost vm \S*base\.qcow2: .*backing file of/m);
    expect(run.stdout).toMatch(/changed=0 skipped=2/);
    expectChainIntact(c, before);
  });

  it("of an overlay a running process holds: the base is refused, never rewritten under it", async () => {
    const c = chain();
    const before = { base: identity(c.base), overlay: identity(c.overlay) };
    // qemu-io keeps the overlay open, and with it the base, as a VM on the overlay does.
    const holder = spawn("qemu-io", ["-f", "qcow2", c.overlay], { stdio: ["pipe", "ignore", "pipe"] });
    defer(() => holder.kill("SIGKILL"));
    let holderError = "";
    holder.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      holderError += chunk;
    });
    // Watched in /proc/locks, not by opening the overlay: a probe that opens it can hold its lock
    // at the very moment qemu-io asks for it, and qemu-io gives up.
    for (const deadline = Date.now() + 30_000; !heldByQemu(c.base); await sleep(20)) {
      if (holder.exitCode !== null) throw new Error(`qemu-io exited ${holder.exitCode}: ${holderError}`);
      if (Date.now() > deadline) throw new Error("qemu-io did not take the base's lock");
    }
    const run = await apply(c.inventory, c.playbook);
    holder.stdin?.end();
    await new Promise((r) => holder.once("close", r));
    expect(run.stdout, shown(run)).toMatch(
      /^skipped +localhost vm \S*overlay\.qcow2: in use by a running process/m,
    );
    expect(run.stdout).toMatch(/^skipped +localhost vm \S*base\.qcow2: /m);
    expect(run.stdout).toMatch(/changed=0 skipped=2/);
    expectChainIntact(c, before);
  });
});
