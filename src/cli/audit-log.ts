/**
 * The JSON-lines audit log of every `plan` and `apply` (`--log FILE`, by default under the user's
 * state directory). Each record is one appended write of a whole line, so runs that share the file
 * never split each other's lines. A log that cannot be written is one warning, and the run goes on:
 * an audit log must not break a pipeline.
 */
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, writeSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { readSourceBytes } from "../config/source-file.js";
import type { Plan } from "../plan/plan.js";
import { sha256 } from "../plan/saved.js";
import {
  type AuditFile,
  type AuditRecord,
  auditLine,
  endRecord,
  eventRecord,
  planRecord,
  runRecord,
} from "../report/audit-records.js";
import type { RunEvent } from "../run/events.js";
import type { RunResult } from "../run/results.js";
import { type CliIo, print } from "./io.js";
import { reasonOf } from "./reports.js";
import { VERSION } from "./version.js";

/** What the command line says about the log: `--log FILE`, `--no-log` (false), or nothing. */
export type LogOption = string | false | undefined;

export interface AuditLog {
  /** The plan the run works from (or, for `plan`, shows). */
  plan(plan: Plan): void;
  event(event: RunEvent): void;
  /** Writes the last record and closes the file. */
  end(exitCode: number, error?: string): void;
}

export const noAuditLog: AuditLog = { plan: () => {}, event: () => {}, end: () => {} };

/** `$XDG_STATE_HOME/reclaim/runs.jsonl`, else `~/.local/state/reclaim/runs.jsonl`; undefined without either. */
export function defaultAuditLogPath(env: NodeJS.ProcessEnv): string | undefined {
  // The XDG base directory specification: a relative path is invalid and ignored.
  const xdg = env.XDG_STATE_HOME;
  const state = xdg && isAbsolute(xdg) ? xdg : env.HOME ? join(env.HOME, ".local", "state") : undefined;
  return state === undefined ? undefined : join(state, "reclaim", "runs.jsonl");
}

export interface AuditLogStart {
  option: LogOption;
  command: "plan" | "apply";
  /** The arguments after `reclaim`. */
  argv: readonly string[];
  playbooks: readonly string[];
  inventory?: string;
}

/** Opens the log and writes the run's first record; `--no-log` gives a log that writes nothing. */
export async function openAuditLog(
  start: AuditLogStart,
  io: CliIo,
  clock: () => Date = () => new Date(),
): Promise<AuditLog> {
  if (start.option === false) return noAuditLog;
  const path = start.option ?? defaultAuditLogPath(io.env);
  if (path === undefined) {
    print(
      io.stderr,
      "reclaim: warning: no audit log: neither XDG_STATE_HOME nor HOME is set (pass --log FILE, or --no-log)",
    );
    return noAuditLog;
  }
  const run = randomBytes(8).toString("hex");
  let fd: number | undefined;
  let result: RunResult | undefined;
  const fail = (error: unknown) => {
    print(
      io.stderr,
      `reclaim: warning: cannot write the audit log ${path}: ${reasonOf(error)}; the run goes on without it`,
    );
    close();
  };
  const close = () => {
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch {
      // Every line was written with its own write: nothing is lost.
    }
    fd = undefined;
  };
  const write = (record: AuditRecord) => {
    if (fd === undefined) return;
    try {
      const line = Buffer.from(auditLine(record, { time: clock(), run }));
      let written = 0;
      while (written < line.length) written += writeSync(fd, line, written);
    } catch (error) {
      fail(error);
    }
  };
  const record = runRecord({
    command: start.command,
    argv: start.argv,
    cwd: process.cwd(),
    toolVersion: VERSION,
    ...whoAmI(),
    playbooks: await Promise.all(start.playbooks.map(digestOf)),
    ...(start.inventory !== undefined ? { inventory: await digestOf(start.inventory) } : {}),
  });
  try {
    makeDirectories(dirname(path));
    // Created owner-only: it says who changed what on which host.
    fd = openSync(path, "a", 0o600);
  } catch (error) {
    fail(error);
  }
  write(record);
  return {
    plan: (plan) => write(planRecord(plan)),
    event: (event) => {
      if (event.type === "run-end") result = event.result;
      const r = eventRecord(event);
      if (r) write(r);
    },
    end: (exitCode, error) => {
      write(endRecord(exitCode, result, error));
      close();
    },
  };
}

/**
 * `mkdir -p`, owner-only, one level at a time: Node's recursive mkdir spins forever where a parent
 * exists but cannot hold a child (a path under /proc), and the log must never hang a run.
 */
function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      mkdirSync(d, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error; // another run made it
    }
  }
}

function whoAmI(): { user?: string; uid?: number; hostname: string } {
  let user: string | undefined;
  try {
    user = userInfo().username;
  } catch {
    // A uid without a passwd entry (some containers): the uid still says who.
  }
  const uid = process.getuid?.();
  return { ...(user ? { user } : {}), ...(uid !== undefined ? { uid } : {}), hostname: hostname() };
}

async function digestOf(path: string): Promise<AuditFile> {
  try {
    // Bounded: the run refuses a file too large to read, and so must not read it here first.
    return { path, sha256: sha256(await readSourceBytes(path)) };
  } catch {
    return { path }; // the run itself says why it cannot read it
  }
}
