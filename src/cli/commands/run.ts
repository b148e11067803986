/** `reclaim plan` and `reclaim apply`: read → validate → plan → (confirm) → apply → recap. */

import { createInterface } from "node:readline/promises";
import { readSourceBytes, readSourceFile, refuseLargeSources } from "../../config/source-file.js";
import { parseDuration } from "../../config/units.js";
import { CancelledError, ConfigError, ReclaimError, RunError, UsageError } from "../../errors.js";
import { hasChanges } from "../../plan/build.js";
import type { Plan } from "../../plan/plan.js";
import {
  parseSavedPlan,
  planToApply,
  SAVED_PLAN_FORMAT,
  SAVED_PLAN_VERSION,
  type SavedPlan,
  type SourceFile,
  sha256,
  staleness,
} from "../../plan/saved.js";
import { EXIT, exitCodeOf } from "../../report/exit-code.js";
import { createPlainRenderer } from "../../report/plain-renderer.js";
import { formatPlan } from "../../report/plan-text.js";
import { formatRecap, formatRecapSummary } from "../../report/recap-text.js";
import type { Renderer } from "../../report/renderer.js";
import { silentRenderer } from "../../report/renderer.js";
import { rendererKindFor, type Verbosity } from "../../report/verbosity.js";
import type { EmitEvent } from "../../run/events.js";
import { executePlan } from "../../run/execute.js";
import { closePrepared, type PreparedRun, preparePlan } from "../../run/prepare.js";
import type { RunResult } from "../../run/results.js";
import { parseShard, type Shard } from "../../run/shard.js";
import { type SshContext, sshContextFrom } from "../../run/transports.js";
import { loadWorkspace, type Workspace } from "../../run/workspace.js";
import type { SshOverrides } from "../../transport/ssh/settings.js";
import { type AuditLog, type LogOption, noAuditLog, openAuditLog } from "../audit-log.js";
import { type CliIo, print } from "../io.js";
import { passphrasePrompter } from "../prompt.js";
import { type ReportFiles, writeFileAtomic, writeReports } from "../reports.js";
import { VERSION } from "../version.js";

export interface RunOptions {
  inventory?: string;
  playbooks: string[];
  json: boolean;
  /** --diff: under each disk of the plan, the policy values that decided it. */
  diff?: boolean;
  forks: number;
  /** Ansible's --limit pattern. */
  limit?: string;
  /** --shard K/N, as written. */
  shard?: string;
  /** --lock-timeout, as written (a duration). */
  lockTimeout?: string;
  ssh: SshCliOptions;
  signal?: AbortSignal;
  /** Reports for pipelines; absent, none is written (not even GitHub's step summary). */
  reports?: ReportFiles;
  /** --quiet or --verbose; absent, normal. */
  verbosity?: Verbosity;
  /** The JSON-lines audit log (--log FILE, --no-log) and the command line it records; absent, none. */
  auditLog?: { option: LogOption; argv: readonly string[] };
}

export interface SshCliOptions {
  sshConfig?: string;
  knownHosts?: string;
  acceptNewHostKeys?: boolean;
  insecureNoHostKeyCheck?: boolean;
}

/** Read and validate the files, then gather facts and plan (read-only on every host). */
async function readAndPlan(
  options: RunOptions,
  io: CliIo,
): Promise<{ workspace: Workspace; prepared: PreparedRun }> {
  const shard = shardOf(options.shard);
  await refuseLargeSources([...(options.inventory ? [options.inventory] : []), ...options.playbooks]);
  const workspace = await loadWorkspace(options.inventory, options.playbooks);
  const prepared = await preparePlan({
    ...workspace,
    forks: options.forks,
    ssh: await sshContext(options.ssh, io),
    ...(options.limit ? { limit: options.limit } : {}),
    ...shard,
  });
  return { workspace, prepared };
}

function shardOf(text: string | undefined): { shard?: Shard } {
  if (text === undefined) return {};
  const shard = parseShard(text);
  if (!shard) throw new UsageError(`--shard: expected K/N with 1 ≤ K ≤ N, such as 2/4, found '${text}'`);
  return { shard };
}

/** --lock-timeout in milliseconds, checked before anything is contacted. */
function lockWaitOf(text: string | undefined): { lockWaitMs?: number } {
  if (text === undefined) return {};
  const ms = parseDuration(text);
  if (ms === undefined)
    throw new UsageError(`--lock-timeout: expected a duration such as 90s or 5m, found '${text}'`);
  return { lockWaitMs: ms };
}

async function sshContext(options: SshCliOptions, io: CliIo): Promise<SshContext> {
  const overrides: SshOverrides = {};
  if (options.knownHosts) overrides.knownHostsFile = options.knownHosts;
  if (options.acceptNewHostKeys) overrides.strictHostKeyChecking = "accept-new";
  if (options.insecureNoHostKeyCheck) {
    overrides.strictHostKeyChecking = "no";
    print(
      io.stderr,
      "reclaim: WARNING: host keys are not checked (--insecure-no-host-key-check): anyone on the network path can impersonate your hosts",
    );
  }
  try {
    const context = await sshContextFrom({
      ...(options.sshConfig ? { sshConfigFile: options.sshConfig } : {}),
      overrides,
      env: io.env,
    });
    // At a terminal, a key with a passphrase not given in the environment is asked for, as ssh does.
    if (io.interactive && !context.passphrase) context.askPassphrase = passphrasePrompter(io);
    return context;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export interface PlanOptions extends RunOptions {
  detailedExitcode: boolean;
  /** --out: save the plan, for `reclaim apply FILE`. */
  out?: string;
}

export interface ApplyOptions extends RunOptions {
  yes: boolean;
}

export async function planCommand(options: PlanOptions, io: CliIo): Promise<number> {
  const log = await auditLogOf(options, io, "plan");
  return audited(log, () => planAndShow(options, io, log));
}

async function planAndShow(options: PlanOptions, io: CliIo, log: AuditLog): Promise<number> {
  if (options.reports?.junit)
    throw new UsageError("--junit reports what apply did: it needs an apply, not a plan or --check");
  const startedAt = new Date().toISOString();
  const { prepared } = await readAndPlan(options, io);
  await closePrepared(prepared);
  const { plan } = prepared;
  log.plan(plan);
  if (options.json || !quiet(options))
    print(io.stdout, options.json ? JSON.stringify(plan, null, 2) : formatPlan(plan, options));
  if (options.out) {
    const saved = await savedPlanOf(options, plan);
    try {
      await writeFileAtomic(options.out, `${JSON.stringify(saved, null, 2)}\n`);
    } catch (error) {
      throw new RunError(`cannot save the plan to ${options.out}: ${(error as Error).message}`);
    }
    if (!options.json && !quiet(options))
      print(io.stdout, `\nSaved the plan to ${options.out}: apply it with \`reclaim apply ${options.out}\`.`);
  }
  const code = plan.hosts.some((h) => h.unreachable)
    ? EXIT.unreachable
    : options.detailedExitcode && hasChanges(plan)
      ? EXIT.changesPending
      : EXIT.ok;
  return withReports(code, io, options, { plan, startedAt });
}

export async function applyCommand(options: ApplyOptions, io: CliIo): Promise<number> {
  const log = await auditLogOf(options, io, "apply");
  return audited(log, () => planAndApply(options, io, log));
}

async function planAndApply(options: ApplyOptions, io: CliIo, log: AuditLog): Promise<number> {
  const saved = await readSavedPlanArgument(options.playbooks);
  if (saved) return applySavedPlan(saved, options, io, log);
  if (!options.yes && !io.interactive) {
    throw new UsageError(
      "apply changes disk images: pass --yes to confirm when not running at a terminal (or use `reclaim plan` to preview)",
    );
  }
  const startedAt = new Date().toISOString();
  const lockWait = lockWaitOf(options.lockTimeout);
  const { workspace, prepared } = await readAndPlan(options, io);
  try {
    const { plan } = prepared;
    log.plan(plan);
    // Quiet or not, a person asked to confirm sees what they confirm.
    if (!options.json && (!quiet(options) || !options.yes)) print(io.stdout, formatPlan(plan, options));
    if (!hasChanges(plan)) {
      const result = await executePlan({
        ...prepared,
        plays: workspace.plays,
        emit: (e) => log.event(e),
        forks: options.forks,
        ...lockWait,
        ...signalOf(options),
      });
      report(io, options, plan, result, "No changes: nothing to apply.");
      return await withReports(exitCodeOf(result), io, options, { plan, result, startedAt });
    }
    if (!options.yes) await confirm(io);
    return await carryOut({ ...prepared, plan }, workspace, { options, io, log, lockWait, startedAt });
  } finally {
    await closePrepared(prepared);
  }
}

interface Carrying {
  options: ApplyOptions;
  io: CliIo;
  log: AuditLog;
  lockWait: { lockWaitMs?: number };
  startedAt: string;
}

/** Carries out a plan with a renderer watching, then reports: the recap, the files, the exit code. */
async function carryOut(prepared: PreparedRun, workspace: Workspace, c: Carrying): Promise<number> {
  const { options, io, log } = c;
  const renderer = await chooseRenderer(io, options);
  const result = await executePlan({
    ...prepared,
    plays: workspace.plays,
    emit: emitTo(renderer, log),
    forks: options.forks,
    ...c.lockWait,
    ...signalOf(options),
  });
  await renderer.done();
  report(io, options, prepared.plan, result);
  const code = options.signal?.aborted ? EXIT.interrupted : exitCodeOf(result);
  return withReports(code, io, options, { plan: prepared.plan, result, startedAt: c.startedAt });
}

function signalOf(options: RunOptions): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}

function quiet(options: RunOptions): boolean {
  return options.verbosity === "quiet";
}

async function chooseRenderer(io: CliIo, options: RunOptions): Promise<Renderer> {
  const verbosity = options.verbosity ?? "normal";
  switch (rendererKindFor({ json: options.json, interactive: io.interactive, verbosity })) {
    case "silent":
      return silentRenderer;
    case "plain":
      return createPlainRenderer(io.stdout, { level: verbosity === "verbose" ? "verbose" : "normal" });
    case "listr": {
      // listr2 only where a person watches a terminal; pipelines never load it.
      const { createListrRenderer } = await import("../../report/listr-renderer.js");
      return createListrRenderer();
    }
  }
}

/** Each event to the renderer and to the audit log. */
function emitTo(renderer: Renderer, log: AuditLog): EmitEvent {
  return (event) => {
    renderer.onEvent(event);
    log.event(event);
  };
}

function auditLogOf(options: RunOptions, io: CliIo, command: "plan" | "apply"): Promise<AuditLog> {
  if (!options.auditLog) return Promise.resolve(noAuditLog);
  return openAuditLog(
    { ...options.auditLog, command, playbooks: options.playbooks, ...inventoryOf(options) },
    io,
  );
}

function inventoryOf(options: RunOptions): { inventory?: string } {
  return options.inventory === undefined ? {} : { inventory: options.inventory };
}

/** Runs a command with its audit log, whose last record is the exit code and what stopped the run. */
async function audited(log: AuditLog, run: () => Promise<number>): Promise<number> {
  let code: number;
  try {
    code = await run();
  } catch (error) {
    log.end(error instanceof ReclaimError ? error.exitCode : EXIT.error, (error as Error).message);
    throw error;
  }
  log.end(code);
  return code;
}

function report(io: CliIo, options: RunOptions, plan: Plan, result: RunResult, headline?: string): void {
  if (options.json) {
    print(io.stdout, JSON.stringify({ plan, result }, null, 2));
    return;
  }
  if (quiet(options)) {
    print(io.stdout, formatRecapSummary(result));
    return;
  }
  if (headline) print(io.stdout, headline);
  print(io.stdout, `\n${formatRecap(result)}`);
}

/**
 * Writes the reports asked for once the run is over. One that cannot be written is an error that
 * stopped the run (exit 1), said after the run's own output; an interruption stays one.
 */
async function withReports(
  code: number,
  io: CliIo,
  options: RunOptions,
  sources: { plan: Plan; result?: RunResult; startedAt: string },
): Promise<number> {
  if (!options.reports) return code;
  const problems = await writeReports(options.reports, { ...sources, toolVersion: VERSION, env: io.env });
  for (const problem of problems) print(io.stderr, `reclaim: ${problem}`);
  return problems.length > 0 && code !== EXIT.interrupted ? EXIT.error : code;
}

async function confirm(io: CliIo): Promise<void> {
  const rl = createInterface({ input: io.stdin, output: io.stdout });
  try {
    const answer = await rl.question("\nApply this plan? Only 'yes' will be accepted: ");
    if (answer.trim() !== "yes") throw new CancelledError("apply cancelled: nothing was changed");
  } finally {
    rl.close();
  }
}

async function digestOf(path: string): Promise<SourceFile> {
  try {
    return { path, sha256: sha256(await readSourceBytes(path)) };
  } catch (error) {
    if (error instanceof ConfigError) throw error; // too large to read
    throw new UsageError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

async function savedPlanOf(options: PlanOptions, plan: Plan): Promise<SavedPlan> {
  return {
    format: SAVED_PLAN_FORMAT,
    version: SAVED_PLAN_VERSION,
    tool: { name: "reclaim", version: VERSION },
    playbooks: await Promise.all(options.playbooks.map(digestOf)),
    ...(options.inventory ? { inventory: await digestOf(options.inventory) } : {}),
    options: {
      ...(options.limit ? { limit: options.limit } : {}),
      ...(options.shard ? { shard: options.shard } : {}),
    },
    plan,
  };
}

/** A single argument that is a saved plan (JSON of ours), or undefined for playbooks. */
async function readSavedPlanArgument(args: readonly string[]): Promise<SavedPlan | undefined> {
  if (args.length !== 1) return undefined;
  const file = args[0] as string;
  let text: string;
  try {
    text = await readSourceFile(file);
  } catch (error) {
    if (error instanceof ConfigError) throw error; // too large, whatever it holds
    return undefined; // the playbook loader reports a missing file with its own words
  }
  if (!text.trimStart().startsWith("{")) return undefined;
  return parseSavedPlan(file, text);
}

/**
 * Terraform's `apply PLANFILE`: the facts are gathered again from the same files and options; if
 * anything the plan was made from has changed, nothing is done and every change is named.
 * Otherwise exactly the saved plan is carried out (it was reviewed: no confirmation is asked).
 */
async function applySavedPlan(
  saved: SavedPlan,
  options: ApplyOptions,
  io: CliIo,
  log: AuditLog,
): Promise<number> {
  if (options.inventory || options.limit || options.shard)
    throw new UsageError(
      "a saved plan names its own inventory, --limit and --shard: pass only the plan file",
    );
  const startedAt = new Date().toISOString();
  const lockWait = lockWaitOf(options.lockTimeout);
  const files = {
    playbooks: await Promise.all(saved.playbooks.map((f) => digestOf(f.path))),
    ...(saved.inventory ? { inventory: await digestOf(saved.inventory.path) } : {}),
  };
  const replanned: ApplyOptions = {
    ...options,
    playbooks: saved.playbooks.map((f) => f.path),
    ...(saved.inventory ? { inventory: saved.inventory.path } : {}),
    ...(saved.options.limit ? { limit: saved.options.limit } : {}),
    ...(saved.options.shard ? { shard: saved.options.shard } : {}),
  };
  const { workspace, prepared } = await readAndPlan(replanned, io);
  try {
    const stale = staleness(saved, files, prepared.plan);
    if (stale.length > 0)
      throw new RunError(
        `the saved plan is stale; nothing was changed. Make a new one with reclaim plan --out:\n  ${stale.join("\n  ")}`,
      );
    const plan = planToApply(saved, prepared.plan);
    log.plan(plan);
    if (!options.json && !quiet(options)) print(io.stdout, formatPlan(plan, options));
    return await carryOut({ ...prepared, plan }, workspace, { options, io, log, lockWait, startedAt });
  } finally {
    await closePrepared(prepared);
  }
}
