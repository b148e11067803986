/**
 * Saved plans, as Terraform has them: `reclaim plan --out FILE` keeps the plan with what it was
 * made from (the digests of the playbooks and the inventory, each image's identity, each guest's
 * state); `reclaim apply FILE` gathers the facts again and carries out that plan only if none of
 * it has changed, naming what did otherwise. Pure, apart from nothing: the CLI reads and writes.
 */
import { createHash } from "node:crypto";
import { MAX_NESTING } from "../config/limits.js";
import { formatBytes } from "../config/units.js";
import { UsageError } from "../errors.js";
import type { DiskPlan, GuestPlan, Plan, ZeroStep } from "./plan.js";

export const SAVED_PLAN_FORMAT = "reclaim-saved-plan";
export const SAVED_PLAN_VERSION = 1;

/** A file the plan was made from, and the SHA-256 of its bytes then. */
export interface SourceFile {
  path: string;
  sha256: string;
}

export interface SavedPlan {
  format: typeof SAVED_PLAN_FORMAT;
  version: typeof SAVED_PLAN_VERSION;
  tool: { name: "reclaim"; version: string };
  playbooks: SourceFile[];
  /** Absent: the implicit localhost inventory. */
  inventory?: SourceFile;
  /** The command-line choices that shaped the plan. */
  options: { limit?: string; shard?: string };
  plan: Plan;
}

/**
 * The saved plan in `text` (the contents of `file`, which only names it in messages).
 * @throws UsageError saying why it is not one: not JSON, nested too deep, not ours, another version.
 */
export function parseSavedPlan(file: string, text: string): SavedPlan {
  const deep = tooDeep(text);
  if (deep)
    throw new UsageError(
      `${file}:${deep.line}:${deep.column}: not a saved plan: nested more than ${MAX_NESTING} levels deep`,
    );
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file}: not a saved plan (invalid JSON: ${(error as Error).message})`);
  }
  const saved = value as Partial<SavedPlan>;
  if (saved.format !== SAVED_PLAN_FORMAT) throw new UsageError(`${file}: not a saved plan of reclaim`);
  if (saved.version !== SAVED_PLAN_VERSION)
    throw new UsageError(
      `${file}: a saved plan of version ${saved.version}; this reclaim reads version ${SAVED_PLAN_VERSION}`,
    );
  if (!Array.isArray(saved.playbooks) || !saved.plan || !Array.isArray(saved.plan.hosts))
    throw new UsageError(`${file}: the saved plan is incomplete`);
  return saved as SavedPlan;
}

/**
 * Where JSON text opens its (MAX_NESTING + 1)th level, if it does: JSON.parse would read it, but
 * writing the plan back out (the audit log, --json) recurses once per level and would overflow.
 */
function tooDeep(text: string): { line: number; column: number } | undefined {
  let depth = 0;
  let inString = false;
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      line += 1;
      lineStart = i + 1;
    } else if (inString) {
      if (c === 92)
        i += 1; // a backslash escapes the next character
      else if (c === 34) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 91 || c === 123) {
      depth += 1;
      if (depth > MAX_NESTING) return { line, column: i - lineStart + 1 };
    } else if (c === 93 || c === 125) {
      depth -= 1;
    }
  }
  return undefined;
}

export function sha256(bytes: Buffer | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Why the saved plan no longer describes the world, one line each; empty when it still does.
 * `files` are the digests of the same paths now.
 */
export function staleness(
  saved: SavedPlan,
  files: { playbooks: SourceFile[]; inventory?: SourceFile },
  fresh: Plan,
): string[] {
  const reasons: string[] = [];
  for (const then of saved.playbooks) {
    const now = files.playbooks.find((f) => f.path === then.path);
    if (!now || now.sha256 !== then.sha256)
      reasons.push(`the playbook ${then.path} changed since the plan was made`);
  }
  if (saved.inventory && files.inventory?.sha256 !== saved.inventory.sha256)
    reasons.push(`the inventory ${saved.inventory.path} changed since the plan was made`);

  const freshHosts = new Map(fresh.hosts.map((h) => [h.host, h]));
  for (const host of saved.plan.hosts) {
    const now = freshHosts.get(host.host);
    if (!now) {
      reasons.push(`host ${host.host} is no longer part of the run`);
      continue;
    }
    if (now.unreachable && !host.unreachable)
      reasons.push(`host ${host.host} is unreachable now: ${now.unreachable}`);
    const guests = new Map(now.guests.map((g) => [`${g.playIndex}\0${g.name}`, g]));
    for (const guest of host.guests) {
      const current = guests.get(`${guest.playIndex}\0${guest.name}`);
      if (!current) {
        reasons.push(`guest ${guest.name} on ${host.host} is no longer found`);
        continue;
      }
      reasons.push(...guestChanges(host.host, guest, current));
    }
    for (const key of guests.keys())
      if (!host.guests.some((g) => `${g.playIndex}\0${g.name}` === key))
        reasons.push(`guest ${key.split("\0")[1]} on ${host.host} was not in the plan`);
  }
  return reasons;
}

function guestChanges(host: string, then: GuestPlan, now: GuestPlan): string[] {
  const reasons: string[] = [];
  const where = `guest ${then.name} on ${host}`;
  if ((then.vm?.state ?? "unknown") !== (now.vm?.state ?? "unknown"))
    reasons.push(`${where} was ${then.vm?.state ?? "not managed"}, now ${now.vm?.state ?? "not managed"}`);
  const stepsThen = (then.zero?.steps ?? []).map(stepKind).join(", ");
  const stepsNow = (now.zero?.steps ?? []).map(stepKind).join(", ");
  if (stepsThen !== stepsNow)
    reasons.push(
      `${where}: the guest-side steps would now be ${stepsNow || "none"} (planned: ${stepsThen || "none"})`,
    );
  const disks = new Map(now.disks.map((d) => [d.path, d]));
  for (const disk of then.disks) {
    const current = disks.get(disk.path);
    if (!current) reasons.push(`${where}: ${disk.path} is no longer among its disks`);
    else reasons.push(...diskChanges(disk, current));
  }
  return reasons;
}

function diskChanges(then: DiskPlan, now: DiskPlan): string[] {
  if (Boolean(then.absent) !== Boolean(now.absent))
    return [`${then.path} ${now.absent ? "is gone" : "appeared"} since the plan was made`];
  const a = then.identity;
  const b = now.identity;
  if (!a || !b) return a === b ? [] : [`${then.path} can no longer be identified as the planned image`];
  const what: string[] = [];
  if (a.device !== b.device || a.inode !== b.inode) what.push("it is another file (device or inode)");
  // A running guest writes its image all the time: only another file counts as a change then.
  const running = then.inUse === true && now.inUse === true;
  if (!running && a.size !== b.size) what.push(`size ${formatBytes(a.size)} → ${formatBytes(b.size)}`);
  if (!running && a.mtimeSec !== b.mtimeSec) what.push("modified since");
  return what.length ? [`${then.path} changed since the plan was made: ${what.join(", ")}`] : [];
}

function stepKind(step: ZeroStep): string {
  return `${step.kind} ${step.mount}`;
}

/**
 * The saved plan as it will be carried out: exactly its steps, except that a fill never writes
 * more than the guest's free space allows now (its reserve is kept as it is today).
 */
export function planToApply(saved: SavedPlan, fresh: Plan): Plan {
  const freshGuest = (host: string, guest: GuestPlan) =>
    fresh.hosts
      .find((h) => h.host === host)
      ?.guests.find((g) => g.name === guest.name && g.playIndex === guest.playIndex);
  return {
    ...saved.plan,
    hosts: saved.plan.hosts.map((host) => ({
      ...host,
      guests: host.guests.map((guest) => {
        const now = freshGuest(host.host, guest);
        if (!guest.zero || !now?.zero) return guest;
        const steps = guest.zero.steps.map((step, i): ZeroStep => {
          const current = now.zero?.steps[i];
          return step.kind === "fill" && current?.kind === "fill" && current.mib < step.mib ? current : step;
        });
        return { ...guest, zero: { ...guest.zero, steps } };
      }),
    })),
  };
}
