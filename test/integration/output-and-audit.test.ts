/**
 * What a run prints and what it leaves behind, from the built CLI on a real image: --quiet prints
 * only the recap's summary, --verbose every event; the JSON-lines audit log (--log, or by default
 * under XDG_STATE_HOME) records who ran what and what changed.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { sha256 } from "../../src/plan/saved.js";
import { deferCleanups } from "../helpers/cleanup.js";
import { type CliRun, ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { allocated, bloatedImage, writePlaybook } from "../helpers/images.js";

const { workspace } = deferCleanups();

beforeAll(() => ensureBuilt(), 120_000);

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

function bloated() {
  const { dir, inventory } = workspace("reclaim-output-test-");
  const image = join(dir, "vm.qcow2");
  bloatedImage(image, { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
  return { dir, image, inventory, playbook: writePlaybook(dir, [image]) };
}

/** The records of a JSON-lines file; each line must parse on its own. */
function records(path: string): Record<string, unknown>[] {
  const text = readFileSync(path, "utf8");
  expect(text.endsWith("\n")).toBe(true);
  return text
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("--quiet and --verbose", { timeout: 60_000 }, () => {
  it("--quiet: plan prints nothing, apply only the RECAP block and the total", async () => {
    const { inventory, playbook } = bloated();
    const plan = await runCliProcess(["plan", "--quiet", "-i", inventory, playbook]);
    expect(plan.code, shown(plan)).toBe(0);
    expect(plan.stdout).toBe("");
    expect(plan.stderr).toBe("");

    const apply = await runCliProcess(["apply", "--quiet", "--yes", "-i", inventory, playbook]);
    expect(apply.code, shown(apply)).toBe(0);
    expect(apply.stderr).toBe("");
    const lines = apply.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe("RECAP");
    expect(lines[1]).toMatch(/^localhost : ok=0 changed=1 skipped=0 failed=0 unreachable=0 {2}allocated /);
    expect(lines[2]).toMatch(/^reclaimed .+ in \d+\.\d s\b/);
  });

  it("--verbose: every event as a line, each step with its description", async () => {
    const { inventory, playbook } = bloated();
    const apply = await runCliProcess(["apply", "--verbose", "--yes", "-i", inventory, playbook]);
    expect(apply.code, shown(apply)).toBe(0);
    expect(apply.stdout).toMatch(/^Plan: 1 disk to rewrite/m);
    expect(apply.stdout).toMatch(/^\[\d\d:\d\d:\d\d\] run started: Plan: 1 disk to rewrite/m);
    expect(apply.stdout).toMatch(
      /^\[\d\d:\d\d:\d\d\] localhost \S+: convert started: qemu-img convert into /m,
    );
    expect(apply.stdout).toMatch(/^\[\d\d:\d\d:\d\d\] run ended in /m);
  });

  it("both at once are a usage error", async () => {
    const { inventory, playbook } = bloated();
    const run = await runCliProcess(["plan", "-q", "-v", "-i", inventory, playbook]);
    expect(run.code).toBe(5);
    expect(run.stderr).toContain("cannot be used with");
  });
});

describe("the audit log", { timeout: 60_000 }, () => {
  it("--log FILE: JSON lines of who ran what and what changed, in an owner-only file", async () => {
    const { dir, image, inventory, playbook } = bloated();
    const before = allocated(image);
    const log = join(dir, "logs", "runs.jsonl");
    const run = await runCliProcess(["apply", "--yes", "--log", log, "-i", inventory, playbook]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stderr).toBe("");
    expect(statSync(log).mode & 0o777).toBe(0o600);

    const lines = records(log);
    expect(lines.map((r) => r.type)).toEqual([
      "run",
      "plan",
      "disk-start",
      ...lines.slice(3, -2).map(() => expect.stringMatching(/^step-(start|end)$/)),
      "disk-end",
      "end",
    ]);
    const [first] = lines;
    expect(new Set(lines.map((r) => r.run))).toEqual(new Set([first?.run]));
    expect(first?.run).toMatch(/^[0-9a-f]{16}$/);
    for (const r of lines) expect(Number.isNaN(Date.parse(String(r.time)))).toBe(false);
    expect(first).toMatchObject({
      command: "apply",
      argv: ["apply", "--yes", "--log", log, "-i", inventory, playbook],
      playbooks: [{ path: playbook, sha256: sha256(readFileSync(playbook)) }],
      inventory: { path: inventory, sha256: sha256(readFileSync(inventory)) },
      uid: process.getuid?.(),
    });
    expect(typeof first?.hostname).toBe("string");
    expect(lines.find((r) => r.type === "disk-end")).toMatchObject({
      host: "localhost",
      guest: "vm",
      path: image,
      action: "rewrite",
      status: "changed",
      allocatedBefore: before,
      allocatedAfter: allocated(image),
    });
    expect(lines.at(-1)).toMatchObject({ type: "end", exitCode: 0, disks: { changed: 1 } });
  });

  it("goes under XDG_STATE_HOME by default, and --no-log keeps none", async () => {
    const { dir, inventory, playbook } = bloated();
    const state = join(dir, "state");
    const plan = await runCliProcess(["plan", "--detailed-exitcode", "-i", inventory, playbook], {
      XDG_STATE_HOME: state,
    });
    expect(plan.code, shown(plan)).toBe(2);
    const log = join(state, "reclaim", "runs.jsonl");
    expect(statSync(log).mode & 0o777).toBe(0o600);
    expect(records(log).map((r) => r.type)).toEqual(["run", "plan", "end"]);
    expect(records(log).at(-1)).toMatchObject({ exitCode: 2 });

    await runCliProcess(["plan", "--no-log", "-i", inventory, playbook], { XDG_STATE_HOME: state });
    expect(records(log)).toHaveLength(3);
  });

  it("that cannot be written is one warning; the run and its exit code are unchanged", async () => {
    const { dir, inventory, playbook } = bloated();
    const run = await runCliProcess(["plan", "--detailed-exitcode", "--log", dir, "-i", inventory, playbook]);
    expect(run.code, shown(run)).toBe(2);
    expect(run.stdout).toMatch(/^Plan: 1 disk to rewrite/m);
    expect(run.stderr).toBe(
      `reclaim: warning: cannot write the audit log ${dir}: it is a directory; the run goes on without it\n`,
    );
  });
});
