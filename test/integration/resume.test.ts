/**
 * A run that stops between steps (killed, connection lost) is finished by the next one. The first
 * run is stopped by a transport that never answers one chosen command, which leaves the disk in
 * exactly the state a kill at that point would.
 */
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_POLICY } from "../../src/config/playbook.js";
import { applyRewrite, checkRewrite } from "../../src/tasks/rewrite-image.js";
import { createLocalTransport } from "../../src/transport/local.js";
import type { CommandSpec, Transport } from "../../src/transport/transport.js";
import { deferCleanups } from "../helpers/cleanup.js";
import { ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { bloatedImage, copySparse, identical, writePlaybook } from "../helpers/images.js";

const { workspace } = deferCleanups();
beforeAll(() => ensureBuilt(), 120_000);

/** Runs everything for real except the first command `stopAt` matches, which never returns. */
function stoppingTransport(stopAt: (spec: CommandSpec) => boolean): {
  transport: Transport;
  stopped: Promise<void>;
} {
  const local = createLocalTransport();
  let reached: () => void = () => {};
  const stopped = new Promise<void>((r) => {
    reached = r;
  });
  let done = false;
  return {
    stopped,
    transport: {
      host: "localhost",
      run: (spec) => {
        if (!done && stopAt(spec)) {
          done = true;
          reached();
          return new Promise(() => {});
        }
        return local.run(spec);
      },
      close: async () => {},
    },
  };
}

async function interruptedRun(stopAt: (spec: CommandSpec) => boolean) {
  const t = workspace();
  const image = join(t.dir, "vm.qcow2");
  bloatedImage(image, { virtualMiB: 512, writtenMiB: 128, freedMiB: 96 });
  copySparse(image, join(t.dir, "pristine.qcow2"));
  const policy = { ...DEFAULT_POLICY, minReclaimableBytes: 16 * 1024 * 1024, zero: "none" as const };
  const target = { host: "localhost", guest: "vm", path: image, policy };
  const plan = await checkRewrite(createLocalTransport(), target);
  expect(plan.action).toBe("rewrite");
  const { transport, stopped } = stoppingTransport(stopAt);
  void applyRewrite(plan, { transport, emit: () => {}, now: () => new Date() });
  await stopped;
  return { dir: t.dir, image, playbook: writePlaybook(t.dir, [image]), inventory: t.inventory };
}

describe("resuming an interrupted rewrite", { timeout: 60_000 }, () => {
  it("finishes with only the swap when the run stopped after verifying", async () => {
    const { dir, image, playbook, inventory } = await interruptedRun(
      (s) => s.argv[0] === "mv" && s.argv.includes("-T"),
    );
    const originalInode = statSync(image).ino;
    expect(existsSync(join(dir, ".vm.qcow2.reclaim-journal"))).toBe(true);

    const rerun = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/finish: an interrupted run left a verified rewrite/);
    expect(rerun.stdout).not.toMatch(/convert started/);
    expect(statSync(image).ino).not.toBe(originalInode);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes(".reclaim-"))).toEqual([]);
  });

  it("only removes the journal when the run stopped right after the swap", async () => {
    const { dir, image, playbook, inventory } = await interruptedRun(
      (s) => s.argv[0] === "rm" && s.argv.length === 4 && String(s.argv[3]).endsWith(".reclaim-journal"),
    );
    const swappedInode = statSync(image).ino;

    const rerun = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/already replaced this image/);
    expect(statSync(image).ino).toBe(swappedInode);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes(".reclaim-"))).toEqual([]);
  });

  it("verifies and swaps a conversion that finished on the host after the run stopped", async () => {
    const { dir, image, playbook, inventory } = await interruptedRun((s) => s.argv[0] === "cp");
    expect(existsSync(join(dir, ".vm.qcow2.reclaim-tmp"))).toBe(true);

    const rerun = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/conversion finished on the host: verify it, swap/);
    expect(rerun.stdout).not.toMatch(/convert started/);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes(".reclaim-"))).toEqual([]);
  });

  it("reattaches to a conversion that still runs on the host when the run stopped", async () => {
    const { dir, image, playbook, inventory } = await interruptedRun((s) =>
      String(s.argv[2] ?? "").includes("reclaim-worker gone"),
    );
    const rerun = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(
      /conversion (still runs on the host: wait for it|finished on the host: verify it)/,
    );
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes(".reclaim-"))).toEqual([]);
  });

  it("starts over when the conversion died without an exit status", async () => {
    const { dir, image, playbook, inventory } = await interruptedRun((s) => s.argv[0] === "cp");
    // What a worker killed, or a host restarted, leaves: output and no exit status.
    rmSync(join(dir, ".vm.qcow2.reclaim-convert.exit"));

    const rerun = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/remove leftovers of an interrupted run/);
    expect(rerun.stdout).toMatch(/convert started/);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes(".reclaim-"))).toEqual([]);
  });

  it("starts over when the conversion failed", async () => {
    const { dir, image, playbook, inventory } = await interruptedRun((s) => s.argv[0] === "cp");
    writeFileSync(join(dir, ".vm.qcow2.reclaim-convert.exit"), "1\n");

    const rerun = await runCliProcess(["apply", "--yes", "-i", inventory, playbook]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/remove leftovers of an interrupted run/);
    expect(rerun.stdout).toMatch(/convert started/);
    expect(identical(join(dir, "pristine.qcow2"), image)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes(".reclaim-"))).toEqual([]);
  });
});
