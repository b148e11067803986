/**
 * The detached worker's shell scripts, run for real by `sh` on this machine with a stand-in for
 * qemu-img, in a directory whose name would run commands if any script pasted it into code.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  parseWatchEnd,
  parseWorkerState,
  startWorkerArgv,
  stopWorkerArgv,
  WORKER_BUSY_EXIT,
  type WorkerFiles,
  watchWorkerArgv,
  workerStateArgv,
  workerTailArgv,
} from "../../../src/tasks/convert-worker.js";
import { createLocalTransport } from "../../../src/transport/local.js";

const root = mkdtempSync(join(tmpdir(), "reclaim-worker-"));
const dir = join(root, "it's $(touch pwned) `touch pwned2`; dir");
mkdirSync(dir);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const local = createLocalTransport();
let n = 0;
function files(): WorkerFiles {
  n += 1;
  return { log: join(dir, `.w${n}.reclaim-convert.log`), exit: join(dir, `.w${n}.reclaim-convert.exit`) };
}
const run = (argv: string[]) => local.run({ argv, timeoutMs: 20_000 });
const state = async (f: WorkerFiles) => parseWorkerState((await run(workerStateArgv(f))).stdout);

/** Stands in for qemu-img convert -p: progress with carriage returns, then a message. */
const fakeConvert = (seconds: number, code = 0) => [
  "sh",
  "-c",
  `printf '    (0.00/100%%)\\r    (50.00/100%%)\\r'; sleep ${seconds}; printf '    (100.00/100%%)\\r'; echo "fake: finished" >&2; exit ${code}`,
];

describe("a detached conversion worker", { timeout: 30_000 }, () => {
  it("runs on after the command that started it returned, and says when it ends and how", async () => {
    const f = files();
    expect((await run(startWorkerArgv(f, fakeConvert(1)))).exitCode).toBe(0);
    expect(await state(f)).toEqual({ state: "running" });
    const progress: string[] = [];
    const watched = await local.run({ argv: watchWorkerArgv(f), onStdout: (c) => progress.push(c) });
    expect(parseWatchEnd(watched.stdout)).toEqual({ ended: true, code: 0 });
    expect(progress.join("")).toMatch(/\((50|100)\.00\/100%\)/);
    expect(await state(f)).toEqual({ state: "exited", code: 0 });
  });

  it("refuses to start a second worker for the same image while the first runs", async () => {
    const f = files();
    await run(startWorkerArgv(f, fakeConvert(2)));
    const second = await run(startWorkerArgv(f, fakeConvert(0)));
    expect(second.exitCode).toBe(WORKER_BUSY_EXIT);
    expect(second.stderr).toMatch(/already running/);
    await run(stopWorkerArgv(f));
  });

  it("reports a failed conversion's exit status and its last message", async () => {
    const f = files();
    await run(startWorkerArgv(f, fakeConvert(0, 3)));
    const watched = await run(watchWorkerArgv(f));
    expect(parseWatchEnd(watched.stdout)).toEqual({ ended: true, code: 3 });
    expect((await run(workerTailArgv(f))).stdout.trim()).toBe("fake: finished");
  });

  it("is stopped, with its whole process group, and its lock released", async () => {
    const f = files();
    await run(startWorkerArgv(f, fakeConvert(30)));
    expect(await state(f)).toEqual({ state: "running" });
    expect((await run(stopWorkerArgv(f))).exitCode).toBe(0);
    expect(await state(f)).toEqual({ state: "gone" });
    const watched = await run(watchWorkerArgv(f));
    expect(parseWatchEnd(watched.stdout)).toEqual({ ended: true });
  });

  it("stops watching once its reader is gone, and never creates the log again", async () => {
    const f = files();
    await run(startWorkerArgv(f, fakeConvert(15)));
    const watch = watchWorkerArgv(f);
    // Its reader takes one byte and goes: what a killed runner's SSH channel amounts to.
    const cut = await local.run({
      argv: ["sh", "-c", '"$@" | head -c 1 >/dev/null', "sh", ...watch],
      timeoutMs: 20_000,
    });
    expect(cut.exitCode).toBe(0);
    // It ended at its next line, long before the worker did.
    expect(await state(f)).toEqual({ state: "running" });
    await run(stopWorkerArgv(f));
    rmSync(f.log);
    await new Promise((r) => setTimeout(r, 1500));
    expect(existsSync(f.log)).toBe(false);
    expect(await state(f)).toEqual({ state: "none" });
  });

  it("has no state at all before it was ever started", async () => {
    expect(await state(files())).toEqual({ state: "none" });
  });

  it("never runs what its file names spell", () => {
    expect(readdirSync(dir).some((name) => name.startsWith("pwned"))).toBe(false);
    expect(existsSync("pwned") || existsSync("pwned2")).toBe(false);
  });
});

describe("reading a worker's answers", () => {
  it("parses every state and rejects anything else", () => {
    expect(parseWorkerState("running\n")).toEqual({ state: "running" });
    expect(parseWorkerState("exit 0\n")).toEqual({ state: "exited", code: 0 });
    expect(parseWorkerState("gone")).toEqual({ state: "gone" });
    expect(() => parseWorkerState("exit nope")).toThrow(/unexpected worker state/);
  });

  it("sees the end of a watch only in its last line", () => {
    expect(parseWatchEnd("  (99.00/100%)\n\nreclaim-worker exit 1\n")).toEqual({ ended: true, code: 1 });
    expect(parseWatchEnd("\nreclaim-worker gone\n")).toEqual({ ended: true });
    expect(parseWatchEnd("  (42.00/100%)\n")).toEqual({ ended: false });
  });
});
