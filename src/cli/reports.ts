/**
 * Writes the reports a pipeline asked for (`--report-json`, `--junit`, `--markdown`) and appends
 * the Markdown summary to GitHub's step summary. Each file is written whole or not at all (a
 * temporary file beside it, flushed, then renamed over it). A report that cannot be written is a
 * message, never an exception: the run it reports on is over and its other reports still count.
 */
import { randomBytes } from "node:crypto";
import { appendFile, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Plan } from "../plan/plan.js";
import { formatJunit } from "../report/junit.js";
import { formatMarkdown, formatPlanMarkdown } from "../report/markdown.js";
import { formatReportJson, reportOf } from "../report/report-json.js";
import type { RunResult } from "../run/results.js";

/** The reports to write; paths as the user gave them. */
export interface ReportFiles {
  reportJson?: string;
  junit?: string;
  markdown?: string;
  /** Append the Markdown summary to the file GITHUB_STEP_SUMMARY names, when it names one. */
  stepSummary?: boolean;
}

export interface ReportSources {
  plan: Plan;
  /** Absent for `reclaim plan`: the reports say what would happen. */
  result?: RunResult;
  startedAt: string;
  toolVersion: string;
  env: NodeJS.ProcessEnv;
}

/** Writes every report asked for; returns one message per report that could not be written. */
export async function writeReports(files: ReportFiles, sources: ReportSources): Promise<string[]> {
  const { plan, result } = sources;
  const problems: string[] = [];
  const markdown = () => (result ? formatMarkdown(plan, result) : formatPlanMarkdown(plan));
  const write = async (what: string, path: string | undefined, content: () => string) => {
    if (!path) return;
    try {
      await writeFileAtomic(path, content());
    } catch (error) {
      problems.push(`cannot write the ${what} to ${path}: ${reasonOf(error)}`);
    }
  };
  await write("JSON report", files.reportJson, () =>
    formatReportJson(
      reportOf(plan, result, { toolVersion: sources.toolVersion, startedAt: sources.startedAt }),
    ),
  );
  if (files.junit) {
    if (!result) problems.push("a JUnit report needs an apply: nothing was applied");
    else
      await write("JUnit report", files.junit, () =>
        formatJunit(plan, result, { startedAt: sources.startedAt }),
      );
  }
  await write("Markdown summary", files.markdown, markdown);
  const summary = sources.env.GITHUB_STEP_SUMMARY;
  if (files.stepSummary && summary) {
    try {
      // Appended, as GitHub asks: other steps' summaries in the same file stay.
      await appendFile(summary, `\n${markdown()}`);
    } catch (error) {
      problems.push(`cannot append the summary to GITHUB_STEP_SUMMARY (${summary}): ${reasonOf(error)}`);
    }
  }
  return problems;
}

/** Readers see the old file or the new one, never half of one. */
export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const temp = join(
    dirname(path),
    `.${basename(path)}.reclaim-tmp-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  try {
    const file = await open(temp, "wx", 0o644);
    try {
      await file.writeFile(content);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => {});
    throw error;
  }
}

/** Why a file could not be written, in words, without the temporary file's name. */
export function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return "its directory does not exist";
    case "ENOTDIR":
      return "a part of the path is not a directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "it is a directory";
    case "ENOSPC":
      return "no space left on the device";
    case "EROFS":
      return "the filesystem is read-only";
    default:
      return code ? `${code}: ${(error as Error).message}` : String(error);
  }
}
