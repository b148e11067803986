/**
 * Hostile files given to the built `reclaim`: each is refused with the documented exit code and a
 * `file:line:column: message` line, and the user never sees a stack trace.
 */
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { deferCleanups } from "../helpers/cleanup.js";
import { ensureBuilt, runCliProcess } from "../helpers/cli.js";

/** README's exit codes: 4 for an invalid playbook or inventory, 5 for a wrong command line. */
const EXIT = { config: 4, usage: 5 } as const;

/** A Node stack frame, which a user should never see for a mistake of theirs. */
const STACK_FRAME = /^ {4}at /m;

const { workspace } = deferCleanups();

beforeAll(() => ensureBuilt(), 120_000);

describe("reclaim given hostile files", { timeout: 60_000 }, () => {
  it("refuses a billion-laughs playbook in `plan` with exit code 4, at the alias, without a stack trace", async () => {
    const { dir } = workspace("reclaim-hostile-");
    const file = join(dir, "bomb.yml");
    const levels = ["    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
    for (let i = 1; i < 9; i += 1)
      levels.push(
        `    l${i}: &l${i} [${Array(10)
          .fill(`*l${i - 1}`)
          .join(", ")}]`,
      );
    writeFileSync(file, `- name: lol\n  hosts: all\n  policy:\n${levels.join("\n")}\n`);

    const run = await runCliProcess(["plan", file]);
    expect(run.code).toBe(EXIT.config);
    // The eighth *l3 of l4's list (line 8, column 14 + 7 × 5) takes the aliases past 100,000 nodes.
    expect(run.stderr).toContain(
      `${file}:8:49: alias *l3 makes aliases repeat more than 100000 nodes in all (a "billion laughs" document?): expected far fewer\n`,
    );
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(run.stdout).toBe("");
  });

  it("refuses a playbook larger than 16 MiB in `validate` from its size, naming it, its size and the limit", async () => {
    const { dir } = workspace("reclaim-hostile-");
    const file = join(dir, "image.qcow2");
    writeFileSync(file, "");
    truncateSync(file, 2 ** 30); // a sparse GiB: reading it would be the mistake

    const run = await runCliProcess(["validate", file]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stderr).toContain(
      `${file}:1:1: file too large: ${2 ** 30} bytes (1 GiB); expected at most ${16 * 2 ** 20} bytes (16 MiB)\n`,
    );
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });

  it("refuses a saved plan nested 100,000 levels deep in `apply` with exit code 5, at the level past 256", async () => {
    const { dir } = workspace("reclaim-hostile-");
    const file = join(dir, "plan.json");
    writeFileSync(
      file,
      `{"format": "reclaim-saved-plan", "x": ${"[".repeat(100_000)}${"]".repeat(100_000)}}\n`,
    );

    const run = await runCliProcess(["apply", "--yes", file]);
    expect(run.code).toBe(EXIT.usage);
    // The object is level 1 and the first bracket, at column 39, level 2: the 256th is at 39 + 255.
    expect(run.stderr).toContain(
      `reclaim: ${file}:1:294: not a saved plan: nested more than 256 levels deep\n`,
    );
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });
});
