/**
 * The whole host path on this machine: the built CLI, the local transport, the real qemu-img.
 */

import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { deferCleanups } from "../helpers/cleanup.js";
import { ensureBuilt, runCliProcess, startCli } from "../helpers/cli.js";
import {
  allocated,
  bloatedImage,
  copySparse,
  identical,
  MiB,
  randomImage,
  writePlaybook,
} from "../helpers/images.js";
import { processesMentioning } from "../lab/proc.js";

const { defer, workspace } = deferCleanups();

/** Only the image (and any reference copies) may be left in the directory. */
function reclaimLeftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes(".reclaim-"));
}

beforeAll(() => ensureBuilt(), 120_000);

describe("apply on the local host", { timeout: 60_000 }, () => {
  it("shrinks a bloated image, keeps its content identical and its owner and mode", async () => {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, {
      virtualMiB: 1024,
      writtenMiB: 256,
      freedMiB: 192,
      options: "lazy_refcounts=on,cluster_size=131072",
    });
    execFileSync("chown", ["12345:54321", image]);
    execFileSync("chmod", ["640", image]);
    copySparse(image, join(dir, "pristine.qcow2"));
    const before = allocated(image);

    const run = await runCliProcess(["apply", "--yes", "-i", inventory, writePlaybook(dir, [image])]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/changed=1/);

    expect(allocated(image)).toBeLessThan(before / 3);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    const st = statSync(image);
    expect([st.uid, st.gid, (st.mode & 0o777).toString(8)]).toEqual([12345, 54321, "640"]);
    const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", image], { encoding: "utf8" }));
    expect(info["cluster-size"]).toBe(131072);
    expect(info["format-specific"].data["lazy-refcounts"]).toBe(true);
    expect(reclaimLeftovers(dir)).toEqual([]);
  });

  it("changes nothing on a second run: the image keeps its inode", async () => {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 512, writtenMiB: 128, freedMiB: 96 });
    const playbook = writePlaybook(dir, [image]);
    expect((await runCliProcess(["apply", "--yes", "-i", inventory, playbook])).code).toBe(0);
    const first = statSync(image);

    const second = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/No changes/);
    expect(second.stdout).toMatch(/ok=1 changed=0/);
    const after = statSync(image);
    expect([after.ino, after.mtimeMs]).toEqual([first.ino, first.mtimeMs]);

    const plan = await runCliProcess(["plan", "--detailed-exitcode", "-i", inventory, playbook]);
    expect(plan.code).toBe(0);
  });

  it("plans without changing anything and says changes are pending", async () => {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 512, writtenMiB: 128, freedMiB: 96 });
    const before = statSync(image);
    const plan = await runCliProcess([
      "plan",
      "--detailed-exitcode",
      "-i",
      inventory,
      writePlaybook(dir, [image]),
    ]);
    expect(plan.code).toBe(2);
    expect(plan.stdout).toMatch(/rewrite: would give back ~/);
    expect(plan.stdout).toMatch(/1 disk to rewrite/);
    const after = statSync(image);
    expect([after.ino, after.mtimeMs, after.blocks]).toEqual([before.ino, before.mtimeMs, before.blocks]);
    expect(reclaimLeftovers(dir)).toEqual([]);
  });

  it("refuses an image that a running QEMU process holds, and leaves it untouched", async () => {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 512, writtenMiB: 128, freedMiB: 96 });
    const before = statSync(image);
    // qemu-io keeps the image open (and locked, as a VM does) until its stdin closes.
    const holder = spawn("qemu-io", ["-f", "qcow2", image], { stdio: ["pipe", "ignore", "pipe"] });
    defer(() => holder.kill("SIGKILL"));
    let holderError = "";
    holder.stderr.setEncoding("utf8").on("data", (c: string) => {
      holderError += c;
    });
    // Generous: with guest VMs booting beside this test, both cores can be busy for a while.
    await waitFor(() => {
      if (holder.exitCode !== null) throw new Error(`qemu-io exited ${holder.exitCode}: ${holderError}`);
      try {
        execFileSync("qemu-img", ["info", image], { stdio: "ignore" });
        return false;
      } catch {
        return true;
      }
    }, 45_000);
    const run = await runCliProcess(["apply", "--yes", "-i", inventory, writePlaybook(dir, [image])]);
    expect(run.stdout).toMatch(/in use by a running process/);
    expect(run.stdout).toMatch(/skipped=1/);
    const after = statSync(image);
    expect([after.ino, after.mtimeMs, after.blocks]).toEqual([before.ino, before.mtimeMs, before.blocks]);
    holder.stdin.end();
  }, 120_000);

  it("keeps the original as a hard link when keep_backup is on", async () => {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 512, writtenMiB: 128, freedMiB: 96 });
    const originalInode = statSync(image).ino;
    const playbook = writePlaybook(
      dir,
      [image],
      "min_reclaimable: 16MiB\n    zero: none\n    convert: { keep_backup: true }",
    );
    const run = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(run.code).toBe(0);
    const backups = readdirSync(dir).filter((n) => n.startsWith("vm.qcow2.reclaim-backup-"));
    expect(backups).toHaveLength(1);
    expect(statSync(join(dir, backups[0] as string)).ino).toBe(originalInode);
    expect(identical(join(dir, backups[0] as string), image)).toBe(true);
  });

  it("refuses before writing anything when the filesystem lacks room for the new image", async () => {
    if (process.getuid?.() !== 0) return expect.fail("needs root to mount a small tmpfs");
    const { dir, inventory } = workspace();
    const small = join(dir, "small");
    execFileSync("mkdir", [small]);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=200m", "tmpfs", small]);
    defer(() => execFileSync("umount", ["-l", small]));
    const image = join(small, "vm.qcow2");
    // 150 MiB of data of which 30 MiB freed: the new image needs ~120 MiB (+64 MiB margin), ~50 MiB free.
    bloatedImage(image, { virtualMiB: 512, writtenMiB: 150, freedMiB: 30 });
    const before = statSync(image);
    const run = await runCliProcess([
      "apply",
      "--yes",
      "-i",
      inventory,
      writePlaybook(dir, [image], "min_reclaimable: 1MiB\n    min_ratio: 1%\n    zero: none"),
    ]);
    expect(run.stdout).toMatch(/not enough free space in .*needs up to .* is free/);
    expect(readdirSync(small)).toEqual(["vm.qcow2"]);
    expect(statSync(image).mtimeMs).toBe(before.mtimeMs);
  });
});

describe("a kill -9 during conversion", { timeout: 120_000 }, () => {
  it("leaves the original identical, and the next run completes the job", async () => {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    randomImage(image, 1536, 4096);
    copySparse(image, join(dir, "pristine.qcow2"));
    const before = statSync(image);
    const playbook = writePlaybook(dir, [image]);

    const { child, done } = startCli(["apply", "--yes", "-i", inventory, playbook]);
    const temp = join(dir, ".vm.qcow2.reclaim-tmp");
    await waitFor(() => existsSync(temp) && statSync(temp).size > 64 * MiB, 60_000);
    child.kill("SIGKILL");
    const killed = await done;
    expect(killed.signal).toBe("SIGKILL");

    const after = statSync(image);
    expect([after.ino, after.mtimeMs, after.size]).toEqual([before.ino, before.mtimeMs, before.size]);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    const outlived = processesMentioning(temp).length > 0 || existsSync(`${temp.slice(0, -4)}convert.exit`);
    expect(outlived).toBe(true);

    // The conversion ran detached: it outlived the runner, and the next run takes it over.
    const rerun = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(
      /conversion (still runs on the host: wait for it|finished on the host: verify it)/,
    );
    expect(rerun.stdout).not.toMatch(/remove leftovers/);
    expect(rerun.stdout).toMatch(/changed=1/);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    expect(allocated(image)).toBeLessThan(allocated(join(dir, "pristine.qcow2")));
    expect(reclaimLeftovers(dir)).toEqual([]);
  }, 120_000);
});

describe("Ctrl-C during conversion", { timeout: 120_000 }, () => {
  it("stops, removes the temporary image and the journal, and exits 130", async () => {
    const { dir, inventory } = workspace();
    const image = join(dir, "vm.qcow2");
    randomImage(image, 1024, 4096);
    copySparse(image, join(dir, "pristine.qcow2"));
    const before = statSync(image);

    const { child, done } = startCli(["apply", "--yes", "-i", inventory, writePlaybook(dir, [image])]);
    const temp = join(dir, ".vm.qcow2.reclaim-tmp");
    await waitFor(() => existsSync(temp) && statSync(temp).size > 32 * MiB, 60_000);
    child.kill("SIGINT");
    const run = await done;
    expect(run.code).toBe(130);
    expect(run.stderr).toMatch(/interrupted/);
    expect(reclaimLeftovers(dir)).toEqual([]);
    // Cancelling stops the detached conversion too: nothing goes on writing in the background.
    expect(processesMentioning(temp)).toEqual([]);
    const after = statSync(image);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
    await new Promise((r) => setTimeout(r, 20));
  }
}
