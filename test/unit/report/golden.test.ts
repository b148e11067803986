/**
 * Golden tests: the human plan, the recap, the Markdown summaries, the JUnit report and the JSON
 * report of one realistic plan and run (sample-run.ts), compared with the files under
 * test/fixtures/golden/. The outputs hold no clock and no measured duration, so they are stable.
 *
 * After a change of wording that is meant, rewrite the golden files and read their diff:
 *
 *   npx vitest run test/unit/report/golden.test.ts -u
 *   git diff test/fixtures/golden
 *
 * A missing golden file is written on a local run and fails under CI=true.
 */
import { describe, expect, it } from "vitest";
import { formatJunit } from "../../../src/report/junit.js";
import { formatMarkdown, formatPlanMarkdown } from "../../../src/report/markdown.js";
import { formatPlan } from "../../../src/report/plan-text.js";
import { formatRecap } from "../../../src/report/recap-text.js";
import { formatReportJson, reportOf } from "../../../src/report/report-json.js";
import { STARTED_AT, samplePlan, sampleResult } from "./sample-run.js";

const golden = (name: string) => `../../fixtures/golden/${name}`;

describe("the reports of a run with a rewrite, an ok, a skipped and a failed disk, a fill and trim, and a failed shutdown", () => {
  const plan = samplePlan();
  const result = sampleResult(plan);

  it("the human plan", async () => {
    await expect(`${formatPlan(plan)}\n`).toMatchFileSnapshot(golden("plan.txt"));
  });

  it("the human plan with --diff: the policy values that decided each disk", async () => {
    await expect(`${formatPlan(plan, { diff: true })}\n`).toMatchFileSnapshot(golden("plan-diff.txt"));
  });

  it("the recap", async () => {
    await expect(`${formatRecap(result)}\n`).toMatchFileSnapshot(golden("recap.txt"));
  });

  it("the Markdown summary of the plan", async () => {
    await expect(formatPlanMarkdown(plan)).toMatchFileSnapshot(golden("plan.md"));
  });

  it("the Markdown summary of the apply", async () => {
    await expect(formatMarkdown(plan, result)).toMatchFileSnapshot(golden("apply.md"));
  });

  it("the JUnit report", async () => {
    await expect(formatJunit(plan, result, { startedAt: STARTED_AT })).toMatchFileSnapshot(
      golden("apply.junit.xml"),
    );
  });

  it("the JSON report", async () => {
    const report = reportOf(plan, result, { toolVersion: "0.1.0", startedAt: STARTED_AT });
    await expect(formatReportJson(report)).toMatchFileSnapshot(golden("report.json"));
  });
});
