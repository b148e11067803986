/**
 * The audit log's records, one JSON object a line: who ran what, on which host, and what changed.
 * Made from chosen fields only: never a plan's facts, never an environment variable, never the
 * value of a secret-bearing option.
 */
import type { Plan } from "../plan/plan.js";
import type { DiskRef, RunEvent } from "../run/events.js";
import type { DiskStatus, RunResult } from "../run/results.js";

/**
 * Command-line options whose value is a secret, left out of the logged command line. None today:
 * secrets come from the environment (RECLAIM_SSH_PASSPHRASE, RECLAIM_BECOME_PASSWORD) or a
 * hidden prompt. An option that ever carries one must be listed here.
 */
export const SECRET_OPTIONS: readonly string[] = [];

export const REDACTED = "<redacted>";

/** The command line with the value of every secret-bearing option replaced (`--opt V`, `--opt=V`). */
export function withoutSecrets(argv: readonly string[], secretOptions = SECRET_OPTIONS): string[] {
  // After `--` there are only arguments, no option values.
  const dashes = argv.indexOf("--");
  const end = dashes === -1 ? argv.length : dashes;
  return argv.map((arg, i) => {
    if (i >= end) return arg;
    const previous = argv[i - 1];
    if (previous !== undefined && secretOptions.includes(previous)) return REDACTED;
    const name = secretOptions.find((o) => arg.startsWith(`${o}=`));
    return name ? `${name}=${REDACTED}` : arg;
  });
}

/** A file a run was made from, with its digest (absent when it could not be read). */
export interface AuditFile {
  path: string;
  sha256?: string;
}

export interface RunStart {
  command: "plan" | "apply";
  /** The arguments after `reclaim`, as given (secret values are removed here). */
  argv: readonly string[];
  cwd: string;
  toolVersion: string;
  user?: string;
  uid?: number;
  hostname: string;
  /** The playbooks named on the command line (for `apply PLANFILE`: the saved plan). */
  playbooks: AuditFile[];
  inventory?: AuditFile;
}

export type AuditRecord = { type: string } & Record<string, unknown>;

/** The first record of a run: who ran what, where, from which files. */
export function runRecord(start: RunStart): AuditRecord {
  return {
    type: "run",
    command: start.command,
    argv: withoutSecrets(start.argv),
    cwd: start.cwd,
    toolVersion: start.toolVersion,
    user: start.user,
    uid: start.uid,
    hostname: start.hostname,
    playbooks: start.playbooks,
    inventory: start.inventory,
  };
}

/** What the plan says in numbers, and which hosts could not be reached. */
export function planRecord(plan: Plan): AuditRecord {
  const unreachable = plan.hosts.filter((h) => h.unreachable);
  return {
    type: "plan",
    hosts: plan.hosts.length,
    ...plan.totals,
    unreachable: unreachable.map((h) => ({ host: h.host, reason: h.unreachable })),
  };
}

/**
 * The record of a run event; undefined for those the log leaves out: progress, and the run's own
 * start and end (the plan and end records say that, the end with the exit code).
 */
export function eventRecord(event: RunEvent): AuditRecord | undefined {
  switch (event.type) {
    case "run-start":
    case "run-end":
    case "step-progress":
    case "guest-zero-progress":
      return undefined;
    case "guest-zero-start":
      return {
        type: event.type,
        host: event.host,
        guest: event.guest,
        steps: event.plan.steps.map((st) => ({ kind: st.kind, mount: st.mount })),
      };
    case "guest-zero-end": {
      const r = event.result;
      return {
        type: event.type,
        host: r.host,
        guest: r.guest,
        ok: r.ok,
        message: r.message,
        outcomes: r.outcomes.map((o) => ({ mount: o.mount, kind: o.kind, ok: o.ok, bytes: o.bytes })),
        durationMs: Math.round(r.durationMs),
      };
    }
    case "vm-start":
      return { type: event.type, host: event.host, guest: event.guest, action: event.action };
    case "vm-end": {
      const r = event.result;
      return {
        type: event.type,
        host: r.host,
        guest: r.guest,
        action: r.action,
        manager: r.manager,
        ok: r.ok,
        idle: r.idle,
        message: r.message,
        durationMs: Math.round(r.durationMs),
      };
    }
    case "disk-start":
      return {
        type: event.type,
        ...diskOf(event.disk),
        action: event.plan.action,
        reason: event.plan.reason,
        allocatedBefore: event.plan.estimate?.allocatedBefore,
        estimatedAfter: event.plan.estimate?.allocatedAfter,
      };
    case "step-start":
      return { type: event.type, ...diskOf(event.disk), step: event.step };
    case "step-end":
      return {
        type: event.type,
        ...diskOf(event.disk),
        step: event.step,
        ok: event.ok,
        message: event.message,
        durationMs: Math.round(event.durationMs),
      };
    case "disk-end": {
      const r = event.result;
      return {
        type: event.type,
        host: r.host,
        guest: r.guest,
        path: r.path,
        action: r.action,
        status: r.status,
        message: r.message,
        allocatedBefore: r.allocatedBefore,
        allocatedAfter: r.allocatedAfter,
        durationMs: Math.round(r.durationMs),
      };
    }
    default:
      return event satisfies never;
  }
}

/** Only the disk's names: a DiskRef may be a richer object (a DiskPlan is one). */
function diskOf(disk: DiskRef): DiskRef {
  return { host: disk.host, guest: disk.guest, path: disk.path };
}

/** The last record: the exit code, what stopped the run if something did, and the totals. */
export function endRecord(exitCode: number, result?: RunResult, error?: string): AuditRecord {
  const record: AuditRecord = { type: "end", exitCode, error };
  if (!result) return record;
  const count = (status: DiskStatus) => result.disks.filter((d) => d.status === status).length;
  const sum = (pick: (h: RunResult["hosts"][number]) => number) =>
    result.hosts.reduce((total, h) => total + pick(h), 0);
  return {
    ...record,
    durationMs: Math.round(result.durationMs),
    disks: { ok: count("ok"), changed: count("changed"), skipped: count("skipped"), failed: count("failed") },
    guestsFailed: result.guests.filter((g) => !g.ok).length,
    vmsFailed: result.vms.filter((v) => !v.ok).length,
    unreachableHosts: result.hosts.filter((h) => h.unreachable).length,
    allocatedBefore: sum((h) => h.allocatedBefore),
    allocatedAfter: sum((h) => h.allocatedAfter),
    reclaimed: sum((h) => h.reclaimed),
  };
}

/** One line of the log: time and run id first; fields without a value are left out. */
export function auditLine(record: AuditRecord, context: { time: Date; run: string }): string {
  return `${JSON.stringify({ time: context.time.toISOString(), run: context.run, ...record })}\n`;
}
