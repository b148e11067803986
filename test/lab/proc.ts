/**
 * Process-tree helpers for the lab: find the processes a server we started has forked, and end
 * exactly those by PID (never by name). A PID is only signalled while its start time still matches
 * the one recorded when it was found, so a recycled PID is never hit.
 */
import { readdirSync, readFileSync } from "node:fs";

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** Start time in clock ticks since boot (field 22 of /proc/PID/stat): identifies the process. */
  start: number;
  /** One-letter state; "Z" is a zombie (already dead, waiting to be reaped). */
  state: string;
}

export function procInfo(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ..." where comm may contain spaces and parentheses.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const state = rest[0] ?? "?";
  const ppid = Number(rest[1]);
  const start = Number(rest[19]);
  return { pid, ppid, start, state };
}

export function allProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const info = procInfo(Number(name));
    if (info) out.push(info);
  }
  return out;
}

/** The live (non-zombie) descendants of `pid`, parents before children. */
export function descendants(pid: number): ProcInfo[] {
  const byParent = new Map<number, ProcInfo[]>();
  for (const p of allProcesses()) {
    const list = byParent.get(p.ppid) ?? [];
    list.push(p);
    byParent.set(p.ppid, list);
  }
  const out: ProcInfo[] = [];
  const queue = [pid];
  for (let i = 0; i < queue.length && i < 10_000; i++) {
    for (const child of byParent.get(queue[i] as number) ?? []) {
      if (child.state === "Z") continue;
      out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}

/** True while the very process recorded in `p` exists and is not a zombie. */
export function isAlive(p: Pick<ProcInfo, "pid" | "start">): boolean {
  const now = procInfo(p.pid);
  return now !== undefined && now.start === p.start && now.state !== "Z";
}

export function signal(p: Pick<ProcInfo, "pid" | "start">, sig: NodeJS.Signals): void {
  if (!isAlive(p)) return;
  try {
    process.kill(p.pid, sig);
  } catch {
    // Gone in between: fine.
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until none of `procs` is alive; polls every 20 ms, at most `timeoutMs`. Returns the survivors. */
export async function waitGone(procs: readonly ProcInfo[], timeoutMs: number): Promise<ProcInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000; i++) {
    const left = procs.filter(isAlive);
    if (left.length === 0 || Date.now() >= deadline) return left;
    await sleep(20);
  }
  return procs.filter(isAlive);
}

/** SIGTERM, then SIGKILL for whatever is left after `graceMs`; resolves once all are gone (bounded). */
export async function terminate(procs: readonly ProcInfo[], graceMs = 2000): Promise<ProcInfo[]> {
  for (const p of procs) signal(p, "SIGTERM");
  const left = await waitGone(procs, graceMs);
  for (const p of left) signal(p, "SIGKILL");
  return waitGone(left, 2000);
}

/** Synchronous last resort (for process "exit" handlers): SIGKILL, no waiting. */
export function killNow(procs: readonly ProcInfo[]): void {
  for (const p of procs) signal(p, "SIGKILL");
}

/** PIDs of live (not zombie) processes whose command line mentions `text` (a temp dir, a config path). */
export function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (
        readFileSync(`/proc/${name}/cmdline`, "utf8").includes(text) &&
        procInfo(Number(name))?.state !== "Z"
      ) {
        pids.push(Number(name));
      }
    } catch {
      // Exited meanwhile.
    }
  }
  return pids;
}
