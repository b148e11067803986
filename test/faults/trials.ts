/**
 * The machinery of the kill trials: how many to run, a seeded PRNG for the random ones, a SIGKILL
 * of the real CLI process at a chosen moment, what a kill left behind, and the tally written to
 * test-results/fault-trials.json for RELIABILITY.md.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { type CliRun, ROOT, startCli } from "../helpers/cli.js";
import { descendants, type ProcInfo, processesMentioning, procInfo, sleep, terminate } from "../lab/proc.js";

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// How many trials, and the random draws

/**
 * Trials per class: `FAULT_TRIALS` when set (the soak), else the class's fast default. A class
 * that must cover a set of cases runs at least `atLeast`.
 */
export function trialCount(fastDefault: number, atLeast = 1): number {
  const env = process.env.FAULT_TRIALS;
  if (env === undefined || env === "") return Math.max(fastDefault, atLeast);
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) throw new Error(`FAULT_TRIALS must be a whole number ≥ 1, not '${env}'`);
  return Math.max(n, atLeast);
}

/** The run's seed: `FAULT_SEED` repeats an earlier run's draws; otherwise a fresh one. */
export function runSeed(): number {
  const env = process.env.FAULT_SEED;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
      throw new Error(`FAULT_SEED must be a whole number in 0..2^32-1, not '${env}'`);
    return n;
  }
  return Math.floor(Math.random() * 0x100000000);
}

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// The tally

export type Outcome = "intact" | "replaced" | "lost";

export interface ClassTally {
  class: string;
  trials: number;
  outcomes: Record<Outcome, number>;
  "next-run-completed": number;
  "leftovers-after-next-run": number;
  /** The step (or guest-side phase) the CLI had last announced when it died, per trial. */
  "killed-in": Record<string, number>;
  /**
   * Trials after whose kill the work the CLI had started still ran: a (detached) `qemu-img
   * convert` for the host-side classes, the `dd` of a fill inside the guest for the guest class.
   */
  "still-running-after-kill": number;
  "duration-s": number;
  /** Things seen that break no invariant but belong in the record, counted by what they were. */
  observations: Record<string, number>;
  /** One line per trial that broke an invariant: the seed, the trial and what was observed. */
  failures: string[];
}

export class Tally {
  readonly classes: ClassTally[] = [];
  constructor(
    readonly seed: number,
    private readonly started = performance.now(),
  ) {}

  open(name: string): ClassTally {
    const t: ClassTally = {
      class: name,
      trials: 0,
      outcomes: { intact: 0, replaced: 0, lost: 0 },
      "next-run-completed": 0,
      "leftovers-after-next-run": 0,
      "killed-in": {},
      "still-running-after-kill": 0,
      "duration-s": 0,
      observations: {},
      failures: [],
    };
    this.classes.push(t);
    return t;
  }

  /** Writes test-results/fault-trials.json (replaced atomically enough for a test artifact). */
  write(): string {
    const file = join(ROOT, "test-results", "fault-trials.json");
    mkdirSync(dirname(file), { recursive: true });
    const total = (key: "trials" | "next-run-completed" | "leftovers-after-next-run") =>
      this.classes.reduce((sum, c) => sum + c[key], 0);
    const body = {
      generated: new Date().toISOString(),
      seed: this.seed,
      "fault-trials-env": process.env.FAULT_TRIALS ?? null,
      "duration-s": round1((performance.now() - this.started) / 1000),
      totals: {
        trials: total("trials"),
        lost: this.classes.reduce((sum, c) => sum + c.outcomes.lost, 0),
        "next-run-completed": total("next-run-completed"),
        "leftovers-after-next-run": total("leftovers-after-next-run"),
      },
      classes: this.classes,
    };
    writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
    return file;
  }
}

/** Counts one more of `what` in the class's observations. */
export function observe(c: ClassTally, what: string): void {
  c.observations[what] = (c.observations[what] ?? 0) + 1;
}

export function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

// ---------------------------------------------------------------------------------------------
// Killing the CLI

export interface KillPoint {
  /** Arms the kill: called with each line the CLI writes; true at the line to kill on. */
  at: (line: string) => boolean;
  /** What to do between that line and the SIGKILL (a random delay, a look into the guest). */
  wait?: () => Promise<void>;
}

export interface KilledRun {
  /** The CLI died of our SIGKILL; false when it had ended before the kill (a missed trial). */
  killed: boolean;
  /** The line that armed the kill; undefined when it never came (then the CLI ran to its end). */
  trigger?: string;
  /** The last step the CLI announced (`convert`, `guest-side fill`, …) before it died. */
  lastStep: string;
  run: CliRun;
  /** The CLI's descendants a moment before the kill, for the final clean-up. */
  children: ProcInfo[];
}

/**
 * A trial whose kill did not land: the CLI ended first. `retry` when it simply got there before
 * the kill (a step of a few ms); not when it failed on its own, which no retry would change.
 */
export interface Missed {
  retry: boolean;
  why: string;
}

/** What a run that ended before its kill did, as a trial's outcome. */
export function missed(k: KilledRun): Missed {
  const tail = (text: string) => text.trimEnd().split("\n").slice(-8).join(" \\ ");
  return {
    retry: k.run.code === 0,
    why: `the CLI ended (exit ${k.run.code ?? k.run.signal}) before the kill${k.trigger ? "" : ", the kill point never came"}; stdout: ${tail(k.run.stdout)}; stderr: ${tail(k.run.stderr)}`,
  };
}

/** The step a plain-renderer line announces, if any. */
export function stepOf(line: string): string | undefined {
  const step = /: ([a-z-]+) started\b/.exec(line)?.[1];
  if (step) return step;
  if (/: freeing blocks inside the guest/.test(line)) return "guest-side fill";
  if (/: shutdown \(/.test(line)) return "shutdown";
  return undefined;
}

/**
 * Runs `reclaim ARGS` and SIGKILLs it (the node process only, as `kill -9 PID` would) at `point`.
 * Bounded: if the point does not come within `timeoutMs`, the CLI is killed then all the same.
 */
export async function runAndKill(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  point: KillPoint,
  timeoutMs: number,
): Promise<KilledRun> {
  const { child, done } = startCli(args, env);
  const pid = child.pid;
  let trigger: string | undefined;
  let lastStep = "before any step";
  let partial = "";
  let armed: () => void = () => {};
  const reached = new Promise<void>((resolve) => {
    armed = resolve;
  });
  child.stdout?.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (trigger === undefined && point.at(line)) {
        trigger = line;
        armed();
      }
    }
  });
  let ended = false;
  void done.then(() => {
    ended = true;
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  await Promise.race([reached.then(() => point.wait?.()), done, late]);
  clearTimeout(timer);
  let children: ProcInfo[] = [];
  if (!ended && pid !== undefined) {
    children = descendants(pid);
    child.kill("SIGKILL");
  }
  const run = await boundedRun(done, 10_000, `reclaim ${args.join(" ")}: no exit after SIGKILL`);
  // The step the kill landed in: the last one the CLI announced before it died.
  for (const line of run.stdout.split("\n")) {
    const step = stepOf(line);
    if (step) lastStep = step;
  }
  return { killed: run.signal === "SIGKILL", ...(trigger ? { trigger } : {}), lastStep, run, children };
}

/** Runs `reclaim ARGS` to its end, bounded: past `timeoutMs` it is killed and that is an error. */
export async function runBounded(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<CliRun> {
  const { child, done } = startCli(args, env);
  if (onLine) {
    let partial = "";
    child.stdout?.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) onLine(line);
    });
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), timeoutMs);
  });
  const first = await Promise.race([done, late]);
  clearTimeout(timer);
  if (first !== "late") return first;
  child.kill("SIGKILL");
  const run = await boundedRun(done, 10_000, "no exit after SIGKILL");
  return { ...run, stderr: `${run.stderr}\n(test: killed after ${timeoutMs} ms without an end)` };
}

async function boundedRun(done: Promise<CliRun>, ms: number, why: string): Promise<CliRun> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why)), ms);
  });
  try {
    return await Promise.race([done, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a run printed, for a failure's message. */
export function shown(run: CliRun): string {
  return `exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout.trimEnd()}\n--- stderr\n${run.stderr.trimEnd()}`;
}

// ---------------------------------------------------------------------------------------------
// Processes a trial started

/**
 * Every live process of ours that names `dir` on its command line (a `qemu-img convert` of an
 * image in it, detached or not, local or under the lab's sshd) plus `known` descendants recorded
 * at a kill: the candidates for the final clean-up.
 */
export function processesOf(dir: string, known: readonly ProcInfo[] = []): ProcInfo[] {
  const found = processesMentioning(dir)
    .map((pid) => procInfo(pid))
    .filter((p): p is ProcInfo => p !== undefined && p.pid !== process.pid);
  const seen = new Set(found.map((p) => p.pid));
  return [...found, ...known.filter((p) => !seen.has(p.pid))];
}

/** True when one of our processes converts an image of `dir` right now. */
export function convertRunning(dir: string): boolean {
  return processesMentioning(dir).some((pid) => {
    try {
      return /(^|\/|\0)qemu-img\0convert\0/.test(readFileSync(`/proc/${pid}/cmdline`, "utf8"));
    } catch {
      return false;
    }
  });
}

/** Waits (bounded) until no process of ours names `dir`; returns those still there. */
export async function settled(dir: string, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000; i++) {
    const left = processesMentioning(dir);
    if (left.length === 0 || Date.now() >= deadline) return left;
    await sleep(50);
  }
  return processesMentioning(dir);
}

/** Final clean-up only: ends, by PID, what our trials left running in `dirs`. */
export async function endLeftovers(dirs: readonly string[], known: readonly ProcInfo[]): Promise<number> {
  const procs = dirs.flatMap((d) => processesOf(d)).concat(known);
  const unique = [...new Map(procs.map((p) => [p.pid, p])).values()];
  await terminate(unique, 1000);
  return unique.length;
}

// ---------------------------------------------------------------------------------------------
// Images

export async function qemuImgExit(
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<{ code: number; out: string }> {
  try {
    const r = await execFileAsync("qemu-img", [...args], { timeout: timeoutMs, encoding: "utf8" });
    return { code: 0, out: `${r.stdout}${r.stderr}`.trim() };
  } catch (e) {
    const err = e as { code?: number | string; stdout?: string; stderr?: string; message: string };
    const code = typeof err.code === "number" ? err.code : -1;
    return { code, out: `${err.stdout ?? ""}${err.stderr ?? ""}`.trim() || err.message };
  }
}

/**
 * What a kill left of an image: `intact` (the original file, same content), `replaced` (a new file,
 * same content: the rewrite completed) or `lost` (missing, different content, or not clean).
 * `pristine` is a copy made before the run; `originalInode` the image's inode then.
 */
export async function imageOutcome(
  image: string,
  pristine: string,
  originalInode: number,
  share = false,
): Promise<{ outcome: Outcome; detail: string }> {
  let inode: number;
  try {
    inode = statSync(image).ino;
  } catch {
    return { outcome: "lost", detail: `${image} is gone` };
  }
  const u = share ? ["-U"] : [];
  const compare = await qemuImgExit(["compare", ...u, "-f", "qcow2", "-F", "qcow2", pristine, image]);
  const check = await qemuImgExit(["check", ...u, "-f", "qcow2", image]);
  if (compare.code !== 0 || check.code !== 0)
    return {
      outcome: "lost",
      detail: `compare exit ${compare.code}: ${compare.out}; check exit ${check.code}: ${check.out}`,
    };
  return { outcome: inode === originalInode ? "intact" : "replaced", detail: `inode ${inode}` };
}

/** Documented backups (keep_backup) beside `image`: `NAME.reclaim-backup-YYYYMMDDTHHMMSSZ`. */
export function backupsOf(image: string): string[] {
  const name = basename(image);
  const re = new RegExp(`^${escapeRe(name)}\\.reclaim-backup-\\d{8}T\\d{6}Z$`);
  return readdirSync(dirname(image))
    .filter((n) => re.test(n))
    .map((n) => join(dirname(image), n));
}

/** reclaim's files beside `image` that must not outlive a completed job (backups excepted). */
export function leftoversBeside(image: string): string[] {
  const backups = new Set(backupsOf(image).map((p) => basename(p)));
  return readdirSync(dirname(image)).filter((n) => n.includes(".reclaim-") && !backups.has(n));
}

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export function identityOf(path: string): string {
  const st = statSync(path);
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}
