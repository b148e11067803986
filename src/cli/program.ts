/**
 * The command line: commander parses, the command modules act and return an exit code.
 * Nothing here exits the process; main.ts does, once.
 */

import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { formatDiagnostic, sortDiagnostics } from "../config/diagnostic.js";
import { demoCommand } from "../demo/demo-command.js";
import { ConfigError, ReclaimError } from "../errors.js";
import { EXIT } from "../report/exit-code.js";
import type { Verbosity } from "../report/verbosity.js";
import { inventoryCommand } from "./commands/inventory.js";
import { applyCommand, planCommand } from "./commands/run.js";
import { schemaCommand } from "./commands/schema.js";
import { validateCommand } from "./commands/validate.js";
import { type CliIo, print } from "./io.js";
import type { ReportFiles } from "./reports.js";
import { VERSION } from "./version.js";

const DEFAULT_FORKS = 5;

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number of at least 1");
  return n;
}

export async function runCli(argv: readonly string[], io: CliIo, signal?: AbortSignal): Promise<number> {
  let code: number = EXIT.ok;
  const program = new Command("reclaim")
    .description("Give disk space back from KVM virtual machines, safely.")
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showSuggestionAfterError(true);

  const inventoryOption = () =>
    new Option("-i, --inventory <file>", "Ansible inventory (YAML or INI); default: localhost only");
  const sshOptions = (command: Command) =>
    command
      .option("--ssh-config <file>", "OpenSSH client config to honour (default: ~/.ssh/config)")
      .option(
        "--known-hosts <file>",
        "known_hosts file to check host keys against (default: ~/.ssh/known_hosts)",
      )
      .option(
        "--accept-new-host-keys",
        "record the key of a host not yet in known_hosts (a changed key is still refused)",
      )
      .option("--insecure-no-host-key-check", "DANGEROUS: do not check host keys at all")
      .option("-l, --limit <pattern>", "only hosts this Ansible host pattern also selects")
      .option(
        "--shard <K/N>",
        "only the K-th of N shares of the guests (for CI matrices; stable across runs)",
      );
  /** How much is printed, and the audit log. */
  const outputOptions = (command: Command) =>
    command
      .addOption(
        new Option("-q, --quiet", "print only warnings, errors and the recap's summary").conflicts("verbose"),
      )
      .option("-v, --verbose", "print every event as a line (progress unthrottled, steps described)")
      .option(
        "--log <file>",
        "append a JSON-lines audit log of the run (default: $XDG_STATE_HOME/reclaim/runs.jsonl, or under ~/.local/state)",
      )
      .option("--no-log", "keep no audit log of this run");
  /** Reports for pipelines; the JUnit report only where something is applied. */
  const reportOptions = (command: Command, what: "plan" | "apply") => {
    outputOptions(command)
      .option(
        "--report-json <file>",
        what === "plan"
          ? "write the plan as a JSON report"
          : "write the plan and every result as a JSON report",
      )
      .option(
        "--markdown <file>",
        what === "plan"
          ? "write a Markdown summary of the plan (also appended to $GITHUB_STEP_SUMMARY when set)"
          : "write a Markdown summary of the run (also appended to $GITHUB_STEP_SUMMARY when set)",
      );
    if (what === "apply")
      command.option("--junit <file>", "write a JUnit XML report: one testcase per guest disk");
    return command;
  };
  const forksOption = () =>
    new Option("-f, --forks <n>", "hosts worked on in parallel")
      .default(DEFAULT_FORKS)
      .argParser(positiveInt);

  program
    .command("validate")
    .description("check playbooks and inventory; report every problem as file:line:column")
    .addOption(inventoryOption())
    .argument("<playbook...>")
    .action(async (playbooks: string[], o: { inventory?: string }) => {
      code = await validateCommand({ ...inventoryOf(o), playbooks }, io);
    });

  /** The options plan and apply share, as the command modules take them. */
  const runOptions = (playbooks: string[], o: RunFlags) => ({
    ...inventoryOf(o),
    playbooks,
    forks: o.forks,
    json: Boolean(o.json),
    diff: Boolean(o.diff),
    ...(o.limit ? { limit: o.limit } : {}),
    ...(o.shard !== undefined ? { shard: o.shard } : {}),
    ...(o.lockTimeout !== undefined ? { lockTimeout: o.lockTimeout } : {}),
    ssh: {
      ...(o.sshConfig ? { sshConfig: o.sshConfig } : {}),
      ...(o.knownHosts ? { knownHosts: o.knownHosts } : {}),
      acceptNewHostKeys: Boolean(o.acceptNewHostKeys),
      insecureNoHostKeyCheck: Boolean(o.insecureNoHostKeyCheck),
    },
    reports: reportsOf(o),
    verbosity: verbosityOf(o),
    auditLog: { option: o.log, argv },
    ...signalOf(signal),
  });

  reportOptions(
    sshOptions(
      program
        .command("plan")
        .description("show what apply would do, without changing anything")
        .addOption(inventoryOption())
        .addOption(forksOption())
        .option("--json", "print the plan as JSON")
        .option(
          "--detailed-exitcode",
          "exit 2 when there are changes to apply, 0 when there are none (as Terraform)",
        )
        .option("--out <file>", "save the plan, to carry it out later with `reclaim apply FILE`")
        .option("--diff", "under each disk, the policy values that decided it and how"),
    ),
    "plan",
  )
    .argument("<playbook...>")
    .action(async (playbooks: string[], o: RunFlags & { detailedExitcode?: boolean; out?: string }) => {
      code = await planCommand(
        {
          ...runOptions(playbooks, o),
          detailedExitcode: Boolean(o.detailedExitcode),
          ...(o.out ? { out: o.out } : {}),
        },
        io,
      );
    });

  reportOptions(
    sshOptions(
      program
        .command("apply")
        .description("plan, confirm, then reclaim: rewrite each qualifying image, verified, atomically")
        .addOption(inventoryOption())
        .addOption(forksOption())
        .option("-y, --yes", "do not ask for confirmation (required when not at a terminal)")
        .option(
          "--lock-timeout <duration>",
          "how long to wait for a disk another runner is working on, then skip it (default 5m)",
        )
        .option("--check", "only show the plan (the same as `reclaim plan`)")
        .option("--diff", "under each disk, the policy values that decided it and how")
        .option("--json", "print the plan and the results as JSON"),
    ),
    "apply",
  )
    .argument("<playbook...>", "playbooks, or one plan saved with `reclaim plan --out FILE`")
    .action(async (playbooks: string[], o: RunFlags & { yes?: boolean; check?: boolean }) => {
      const common = runOptions(playbooks, o);
      code = o.check
        ? await planCommand({ ...common, detailedExitcode: false }, io)
        : await applyCommand({ ...common, yes: Boolean(o.yes) }, io);
    });

  program
    .command("inventory")
    .description("show the resolved inventory")
    .addOption(inventoryOption())
    .option("--list", "all hosts and groups with their variables, as JSON (like ansible-inventory --list)")
    .action(async (o: { inventory?: string; list?: boolean }) => {
      code = await inventoryCommand({ ...inventoryOf(o), list: Boolean(o.list) }, io);
    });

  program
    .command("schema")
    .description("print a JSON Schema (playbook, inventory, plan, apply-result or report)")
    .argument("<name>", "playbook | inventory | plan | apply-result | report")
    .action(async (name: string) => {
      code = await schemaCommand(name, io);
    });

  program
    .command("demo")
    .description(
      "build a bloated image in a temporary directory, plan, apply, and show a second run changes nothing",
    )
    .option("--keep", "keep the temporary directory to look at")
    .option(
      "--vm",
      "do it on a real Linux guest booted under QEMU: fill inside, power off, rewrite, start again",
    )
    .action(async (o: { keep?: boolean; vm?: boolean }) => {
      code = await demoCommand({ keep: Boolean(o.keep), vm: Boolean(o.vm), ...signalOf(signal) }, io);
    });

  try {
    await program.parseAsync([...argv], { from: "user" });
    return code;
  } catch (error) {
    return reportError(error, io);
  }
}

interface RunFlags {
  inventory?: string;
  forks: number;
  limit?: string;
  shard?: string;
  lockTimeout?: string;
  json?: boolean;
  diff?: boolean;
  sshConfig?: string;
  knownHosts?: string;
  acceptNewHostKeys?: boolean;
  insecureNoHostKeyCheck?: boolean;
  reportJson?: string;
  junit?: string;
  markdown?: string;
  quiet?: boolean;
  verbose?: boolean;
  /** --log FILE, or false for --no-log. */
  log?: string | false;
}

/** The report files asked for; GitHub's step summary is always appended to when it is set. */
function reportsOf(o: RunFlags): ReportFiles {
  return {
    ...(o.reportJson ? { reportJson: o.reportJson } : {}),
    ...(o.junit ? { junit: o.junit } : {}),
    ...(o.markdown ? { markdown: o.markdown } : {}),
    stepSummary: true,
  };
}

function verbosityOf(o: RunFlags): Verbosity {
  return o.quiet ? "quiet" : o.verbose ? "verbose" : "normal";
}

function inventoryOf(o: { inventory?: string }): { inventory?: string } {
  return o.inventory === undefined ? {} : { inventory: o.inventory };
}

function signalOf(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/** Every error ends here as a message and an exit code; a stack trace only for our own bugs. */
export function reportError(error: unknown, io: CliIo): number {
  if (error instanceof CommanderError) {
    if (
      error.code === "commander.helpDisplayed" ||
      error.code === "commander.version" ||
      error.code === "commander.help"
    )
      return EXIT.ok;
    return EXIT.usage; // commander has already printed the message
  }
  if (error instanceof ConfigError) {
    for (const d of sortDiagnostics(error.diagnostics)) print(io.stderr, formatDiagnostic(d));
    print(io.stderr, `reclaim: ${error.message}`);
    return error.exitCode;
  }
  if (error instanceof ReclaimError) {
    print(io.stderr, `reclaim: ${error.message}`);
    return error.exitCode;
  }
  print(
    io.stderr,
    `reclaim: unexpected internal error (please report it): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  return EXIT.error;
}
