/**
 * Reports for pipelines from the built CLI on a real image (local host, real qemu-img): the JSON
 * that `plan --json` and `apply --json` print and that `--report-json` writes validates against
 * the published schemas; `--junit`, `--markdown` and GITHUB_STEP_SUMMARY get what CI systems
 * render; a report that cannot be written is an error after the run, not a crash.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { deferCleanups } from "../helpers/cleanup.js";
import { ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { allocated, bloatedImage, writePlaybook } from "../helpers/images.js";
import { OUTPUT_SCHEMAS, schemaErrors } from "../helpers/schemas.js";

const { workspace } = deferCleanups();

const STACK_FRAME = /^ {4}at /m;

function bloated() {
  const { dir, inventory } = workspace("reclaim-reports-test-");
  const image = join(dir, "vm.qcow2");
  bloatedImage(image, { virtualMiB: 512, writtenMiB: 128, freedMiB: 96 });
  return { dir, image, inventory, playbook: writePlaybook(dir, [image]) };
}

beforeAll(() => ensureBuilt(), 120_000);

describe("JSON output against the published schemas", { timeout: 60_000 }, () => {
  it("plan --json prints a plan that validates against schemas/plan.schema.json", async () => {
    const { inventory, playbook } = bloated();
    const run = await runCliProcess(["plan", "--json", "-i", inventory, playbook]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(schemaErrors("plan", JSON.parse(run.stdout))).toEqual([]);
  });

  it("apply --json prints {plan, result} that validates against schemas/apply-result.schema.json", async () => {
    const { inventory, playbook } = bloated();
    const run = await runCliProcess(["apply", "--json", "--yes", "-i", inventory, playbook]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.result.disks[0].status).toBe("changed");
    expect(schemaErrors("apply-result", out)).toEqual([]);

    // A second run has nothing to do: its output validates too.
    const again = await runCliProcess(["apply", "--json", "--yes", "-i", inventory, playbook]);
    expect(again.code).toBe(0);
    expect(schemaErrors("apply-result", JSON.parse(again.stdout))).toEqual([]);
  });

  it.each(OUTPUT_SCHEMAS)("reclaim schema %s prints the schema with its $id", async (name) => {
    const run = await runCliProcess(["schema", name]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).$id).toBe(`https://reclaim.dev/schemas/${name}.schema.json`);
  });
});

describe("reports of apply", { timeout: 60_000 }, () => {
  it("writes the JSON report, the JUnit report and the Markdown summary, and appends to GITHUB_STEP_SUMMARY", async () => {
    const { dir, image, inventory, playbook } = bloated();
    const before = allocated(image);
    const summary = join(dir, "step-summary.md");
    writeFileSync(summary, "# Build\n\nan earlier step\n");
    const run = await runCliProcess(
      [
        "apply",
        "--yes",
        "-i",
        inventory,
        playbook,
        "--report-json",
        join(dir, "report.json"),
        "--junit",
        join(dir, "junit.xml"),
        "--markdown",
        join(dir, "summary.md"),
      ],
      { GITHUB_STEP_SUMMARY: summary },
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);

    const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
    expect(schemaErrors("report", report)).toEqual([]);
    expect(report.tool.name).toBe("reclaim");
    expect(Date.parse(report.startedAt)).not.toBeNaN();
    expect(report.result.disks[0]).toMatchObject({ path: image, status: "changed" });

    const junit = readFileSync(join(dir, "junit.xml"), "utf8");
    expect(junit).toMatch(
      /^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites name="reclaim apply" tests="1" failures="0" errors="0" skipped="0"/,
    );
    expect(junit).toContain(`<testcase name="vm ${image}" classname="localhost" time="`);
    expect(junit).toContain("<system-out>changed: rewritten and verified; allocated ");

    const markdown = readFileSync(join(dir, "summary.md"), "utf8");
    expect(markdown).toMatch(/^## reclaim apply: .+ reclaimed\n/);
    expect(markdown).toMatch(/^\| localhost \| vm \| .*vm\.qcow2 \| changed \| /m);
    expect(markdown).toMatch(/█+░+/);
    expect(readFileSync(summary, "utf8")).toBe(`# Build\n\nan earlier step\n\n${markdown}`);

    expect(allocated(image)).toBeLessThan(before);
    expect(readdirSync(dir).filter((n) => n.includes("reclaim-tmp"))).toEqual([]);
  });

  it("reports a report it cannot write after the run, with exit 1 and no stack trace; the others are written", async () => {
    const { dir, image, inventory, playbook } = bloated();
    const before = allocated(image);
    const missing = join(dir, "no-such-dir", "junit.xml");
    const run = await runCliProcess([
      "apply",
      "--yes",
      "-i",
      inventory,
      playbook,
      "--junit",
      missing,
      "--markdown",
      join(dir, "summary.md"),
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `reclaim: cannot write the JUnit report to ${missing}: its directory does not exist\n`,
    );
    expect(run.stderr).not.toMatch(STACK_FRAME);
    // The run itself happened and was reported.
    expect(run.stdout).toMatch(/changed=1/);
    expect(allocated(image)).toBeLessThan(before);
    expect(readFileSync(join(dir, "summary.md"), "utf8")).toMatch(/^## reclaim apply/);
  });

  it("refuses --junit with --check, before contacting anything", async () => {
    const { dir, inventory, playbook } = bloated();
    const run = await runCliProcess([
      "apply",
      "--check",
      "-i",
      inventory,
      playbook,
      "--junit",
      join(dir, "j.xml"),
    ]);
    expect(run.code).toBe(5);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/--junit reports what apply did/);
    expect(existsSync(join(dir, "j.xml"))).toBe(false);
  });
});

describe("reports of plan", { timeout: 60_000 }, () => {
  it("writes a JSON report without a result and a Markdown summary of what would happen", async () => {
    const { dir, inventory, playbook } = bloated();
    const summary = join(dir, "step-summary.md");
    const run = await runCliProcess(
      [
        "plan",
        "-i",
        inventory,
        playbook,
        "--report-json",
        join(dir, "plan.json"),
        "--markdown",
        join(dir, "plan.md"),
      ],
      { GITHUB_STEP_SUMMARY: summary },
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, "plan.json"), "utf8"));
    expect(schemaErrors("report", report)).toEqual([]);
    expect(report.result).toBeUndefined();
    expect(report.plan.hosts[0].guests[0].disks[0].action).toBe("rewrite");
    const markdown = readFileSync(join(dir, "plan.md"), "utf8");
    expect(markdown).toMatch(/^## reclaim plan: ~.+ to reclaim\n/);
    expect(markdown).toMatch(/^\| localhost \| vm \| .*vm\.qcow2 \| rewrite \| /m);
    expect(readFileSync(summary, "utf8")).toBe(`\n${markdown}`);
  });

  it("has no --junit option", async () => {
    const { dir, inventory, playbook } = bloated();
    const run = await runCliProcess(["plan", "-i", inventory, playbook, "--junit", join(dir, "j.xml")]);
    expect(run.code).toBe(5);
    expect(run.stderr).toMatch(/unknown option '--junit'/);
  });
});
