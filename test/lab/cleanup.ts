/**
 * The dead-man switch for everything the lab starts: a detached reaper process (reaper.mjs), one
 * per test process, that cleans up whatever is still registered when this process ends without
 * doing so itself — including when vitest or a user kills it with SIGKILL, when no exit handler
 * can run. Normal cleanup (stop(), destroy(), Lab.close()) unregisters first, so the reaper then
 * has nothing to do.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";

export type Reapable =
  /** A process and all its descendants at reaping time (SIGSTOP, then SIGKILL); `dir` removed after. */
  | { kind: "process"; pid: number; start: number; dir?: string }
  /** A netns lab: processes inside killed, root-side veth and namespaces deleted, the safety route if last. */
  | { kind: "netns"; jumpNs: string; innerNs: string; rootLink: string }
  | { kind: "dir"; path: string };

const REAPER = fileURLToPath(new URL("./reaper.mjs", import.meta.url));
let reaper: ChildProcess | undefined;
let nextId = 0;

function ensureReaper(): ChildProcess {
  if (reaper && reaper.exitCode === null && reaper.signalCode === null && reaper.stdin?.writable)
    return reaper;
  const child = spawn(process.execPath, [REAPER], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
  child.on("error", () => {});
  child.stdin?.on("error", () => {});
  // Neither the reaper nor its pipe may keep this process alive.
  child.unref();
  (child.stdin as Socket | null)?.unref();
  reaper = child;
  return child;
}

/**
 * Registers `r` with the reaper; returns the function that unregisters it (call it once the
 * resource has been cleaned up normally). Use it for anything long-lived a test starts.
 */
export function registerCleanup(r: Reapable): () => void {
  const id = ++nextId;
  const p = ensureReaper();
  p.stdin?.write(`${JSON.stringify({ op: "add", id, r })}\n`);
  return () => {
    if (p.stdin?.writable) p.stdin.write(`${JSON.stringify({ op: "del", id })}\n`);
  };
}
