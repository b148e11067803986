/** `reclaim plan` and `reclaim apply`: read → validate → plan → (confirm) → apply → recap. */
import { createInterface } from "node:readline/promises";
import { CancelledError, UsageError } from "../../errors.js";
import { hasChanges } from "../../plan/build.js";
import type { Plan } from "../../plan/plan.js";
import { EXIT, exitCodeOf } from "../../report/exit-code.js";
import { createPlainRenderer } from "../../report/plain-renderer.js";
import { formatPlan } from "../../report/plan-text.js";
import { formatRecap } from "../../report/recap-text.js";
import type { Renderer } from "../../report/renderer.js";
import { silentRenderer } from "../../report/renderer.js";
import { executePlan } from "../../run/execute.js";
import { closePrepared, type PreparedRun, preparePlan } from "../../run/prepare.js";
import type { RunResult } from "../../run/results.js";
import { type SshContext, sshContextFrom } from "../../run/transports.js";
import { loadWorkspace, type Workspace } from "../../run/workspace.js";
import type { SshOverrides } from "../../transport/ssh/settings.js";
import { type CliIo, print } from "../io.js";
import { passphrasePrompter } from "../prompt.js";

export interface RunOptions {
  inventory?: string;
  playbooks: string[];
  json: boolean;
  forks: number;
  /** Ansible's --limit pattern. */
  limit?: string;
  ssh: SshCliOptions;
  signal?: AbortSignal;
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
  const workspace = await loadWorkspace(options.inventory, options.playbooks);
  const prepared = await preparePlan({
    ...workspace,
    forks: options.forks,
    ssh: await sshContext(options.ssh, io),
    ...(options.limit ? { limit: options.limit } : {}),
  });
  return { workspace, prepared };
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
}

export interface ApplyOptions extends RunOptions {
  yes: boolean;
}

export async function planCommand(options: PlanOptions, io: CliIo): Promise<number> {
  const { prepared } = await readAndPlan(options, io);
  await closePrepared(prepared);
  const { plan } = prepared;
  print(io.stdout, options.json ? JSON.stringify(plan, null, 2) : formatPlan(plan));
  if (plan.hosts.some((h) => h.unreachable)) return EXIT.unreachable;
  if (options.detailedExitcode && hasChanges(plan)) return EXIT.changesPending;
  return EXIT.ok;
}

export async function applyCommand(options: ApplyOptions, io: CliIo): Promise<number> {
  if (!options.yes && !io.interactive) {
    throw new UsageError(
      "apply changes disk images: pass --yes to confirm when not running at a terminal (or use `reclaim plan` to preview)",
    );
  }
  const { workspace, prepared } = await readAndPlan(options, io);
  try {
    const { plan } = prepared;
    if (!options.json) print(io.stdout, formatPlan(plan));
    if (!hasChanges(plan)) {
      const result = await executePlan({
        ...prepared,
        plays: workspace.plays,
        emit: () => {},
        forks: options.forks,
        ...signalOf(options),
      });
      report(io, options, plan, result, "No changes: nothing to apply.");
      return exitCodeOf(result);
    }
    if (!options.yes) await confirm(io);
    const renderer = await chooseRenderer(io, options);
    const result = await executePlan({
      ...prepared,
      plays: workspace.plays,
      emit: (e) => renderer.onEvent(e),
      forks: options.forks,
      ...signalOf(options),
    });
    await renderer.done();
    report(io, options, plan, result);
    if (options.signal?.aborted) return EXIT.interrupted;
    return exitCodeOf(result);
  } finally {
    await closePrepared(prepared);
  }
}

function signalOf(options: RunOptions): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}

async function chooseRenderer(io: CliIo, options: RunOptions): Promise<Renderer> {
  if (options.json) return silentRenderer;
  if (!io.interactive) return createPlainRenderer(io.stdout);
  // listr2 only where a person watches a terminal; pipelines never load it.
  const { createListrRenderer } = await import("../../report/listr-renderer.js");
  return createListrRenderer();
}

function report(io: CliIo, options: RunOptions, plan: Plan, result: RunResult, headline?: string): void {
  if (options.json) {
    print(io.stdout, JSON.stringify({ plan, result }, null, 2));
    return;
  }
  if (headline) print(io.stdout, headline);
  print(io.stdout, `\n${formatRecap(result)}`);
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
