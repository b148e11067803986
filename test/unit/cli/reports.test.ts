import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeFileAtomic, writeReports } from "../../../src/cli/reports.js";
import { deferCleanups } from "../../helpers/cleanup.js";
import { STARTED_AT, samplePlan, sampleResult } from "../report/sample-run.js";

const { workspace } = deferCleanups();

function sources(env: NodeJS.ProcessEnv = {}) {
  const plan = samplePlan();
  return { plan, result: sampleResult(plan), startedAt: STARTED_AT, toolVersion: "9.9.9", env };
}

/** What a plan's reports are made from: no result. */
function planSources(env: NodeJS.ProcessEnv = {}) {
  const { result: _result, ...rest } = sources(env);
  return rest;
}

describe("writing the reports", () => {
  it("writes each report asked for, whole, and leaves no temporary file", async () => {
    const { dir } = workspace();
    const files = {
      reportJson: join(dir, "report.json"),
      junit: join(dir, "junit.xml"),
      markdown: join(dir, "summary.md"),
    };
    writeFileSync(files.junit, "an older report");
    expect(await writeReports(files, sources())).toEqual([]);
    expect(JSON.parse(readFileSync(files.reportJson, "utf8"))).toMatchObject({
      version: 1,
      tool: { name: "reclaim", version: "9.9.9" },
      startedAt: STARTED_AT,
    });
    expect(readFileSync(files.junit, "utf8")).toMatch(/^<\?xml /);
    expect(readFileSync(files.markdown, "utf8")).toMatch(/^## reclaim apply: /);
    expect(readdirSync(dir).sort()).toEqual(["inventory.yml", "junit.xml", "report.json", "summary.md"]);
  });

  it("appends the summary to GitHub's step summary, keeping what other steps wrote", async () => {
    const { dir } = workspace();
    const summary = join(dir, "step-summary.md");
    writeFileSync(summary, "# an earlier step\n");
    const env = { GITHUB_STEP_SUMMARY: summary };
    expect(await writeReports({ stepSummary: true }, sources(env))).toEqual([]);
    expect(await writeReports({ stepSummary: true }, planSources(env))).toEqual([]);
    const text = readFileSync(summary, "utf8");
    expect(text).toMatch(/^# an earlier step\n\n## reclaim apply: /);
    expect(text).toMatch(/\n## reclaim plan: /);
    // Only when asked: the demo's nested runs leave the step summary alone.
    expect(await writeReports({}, sources(env))).toEqual([]);
    expect(readFileSync(summary, "utf8")).toBe(text);
  });

  it("says which report could not be written and why, and still writes the others", async () => {
    const { dir } = workspace();
    const files = {
      reportJson: join(dir, "no-such-dir", "report.json"),
      markdown: join(dir, "summary.md"),
      junit: dir,
    };
    const problems = await writeReports(files, sources({ GITHUB_STEP_SUMMARY: join(dir, "nope", "s.md") }));
    expect(problems).toEqual([
      `cannot write the JSON report to ${files.reportJson}: its directory does not exist`,
      `cannot write the JUnit report to ${dir}: it is a directory`,
    ]);
    expect(readFileSync(files.markdown, "utf8")).toMatch(/^## reclaim apply/);
    const summary = await writeReports(
      { stepSummary: true },
      sources({ GITHUB_STEP_SUMMARY: join(dir, "nope", "s.md") }),
    );
    expect(summary).toEqual([
      `cannot append the summary to GITHUB_STEP_SUMMARY (${join(dir, "nope", "s.md")}): its directory does not exist`,
    ]);
  });

  it("replaces a file atomically and removes its temporary file when it cannot", async () => {
    const { dir } = workspace();
    const target = join(dir, "out.txt");
    await writeFileAtomic(target, "one");
    await writeFileAtomic(target, "two");
    expect(readFileSync(target, "utf8")).toBe("two");
    // A directory where the file should go: the rename fails, after the temporary file was written.
    const inner = join(dir, "inner");
    mkdirSync(join(inner, "out.txt"), { recursive: true });
    await expect(writeFileAtomic(join(inner, "out.txt"), "x")).rejects.toThrow(/EISDIR/);
    expect(readdirSync(inner)).toEqual(["out.txt"]);
  });
});
