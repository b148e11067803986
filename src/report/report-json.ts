/**
 * The report `--report-json FILE` writes: the plan and every task result as data, with the tool
 * that made them (schemas/report.schema.json). Deterministic: no clock is read here.
 */
import type { Plan } from "../plan/plan.js";
import type { RunResult } from "../run/results.js";

export const REPORT_VERSION = 1;

export interface Report {
  version: typeof REPORT_VERSION;
  tool: { name: "reclaim"; version: string };
  /** When the command started, if the caller says so. */
  startedAt?: string;
  plan: Plan;
  /** Absent in a report of `reclaim plan`. */
  result?: RunResult;
}

export interface ReportContext {
  toolVersion: string;
  startedAt?: string;
}

export function reportOf(plan: Plan, result: RunResult | undefined, context: ReportContext): Report {
  return {
    version: REPORT_VERSION,
    tool: { name: "reclaim", version: context.toolVersion },
    ...(context.startedAt ? { startedAt: context.startedAt } : {}),
    plan,
    ...(result ? { result } : {}),
  };
}

/** The report as the file holds it: pretty JSON, ending with a newline. */
export function formatReportJson(report: Report): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
