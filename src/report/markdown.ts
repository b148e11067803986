/**
 * The Markdown summary for pipelines (`--markdown FILE`, and GitHub's step summary): a table of
 * every disk with before, after and reclaimed, totals, a bar per disk drawn in text, the guest-side
 * and VM lines, and every failure with its message. Pure and deterministic: the same plan and
 * result always give the same text.
 */
import { formatBytes } from "../config/units.js";
import type { DiskPlan, Plan } from "../plan/plan.js";
import type { DiskResult, RunResult } from "../run/results.js";
import { actionWord, describeVm, describeZeroStep, formatTotals } from "./plan-text.js";

const BAR_WIDTH = 20;

/** The summary of an apply: what each disk allocated before and after, and what went wrong. */
export function formatMarkdown(plan: Plan, result: RunResult): string {
  const rows = result.disks.map(diskSizes);
  const total = sumSizes(rows);
  const reclaimed = Math.max(0, total.before - total.after);
  const out = [`## reclaim apply: ${formatBytes(reclaimed)} reclaimed`, "", applySummary(plan, result), ""];

  out.push(
    "| host | guest | disk | status | before | after | reclaimed | estimate |",
    "| :-- | :-- | :-- | :-- | --: | --: | --: | --: |",
  );
  result.disks.forEach((d, i) => {
    const s = rows[i] as Sizes;
    out.push(
      row([
        md(d.host),
        md(d.guest),
        md(d.path),
        d.status === "failed" ? "**failed**" : d.status,
        bytes(s.before),
        bytes(s.after),
        s.before !== undefined && s.after !== undefined ? formatBytes(s.before - s.after) : "—",
        d.estimate ? `at most ${formatBytes(d.estimate.allocatedAfter)}` : "—",
      ]),
    );
  });
  out.push(
    row([
      "**total**",
      "",
      `${result.disks.length} disk${result.disks.length === 1 ? "" : "s"}`,
      "",
      `**${formatBytes(total.before)}**`,
      `**${formatBytes(total.after)}**`,
      `**${formatBytes(total.before - total.after)}**`,
      "",
    ]),
  );
  out.push(
    ...bars(result.disks.map((d, i) => ({ label: [d.host, d.guest, d.path], ...(rows[i] as Sizes) }))),
  );

  out.push(
    ...section(
      "Inside the guests",
      result.guests.map((g) => {
        const done = g.outcomes.length
          ? g.outcomes.map((o) => `${o.ok ? "" : "**failed** "}${md(o.mount)}: ${md(o.message)}`).join("; ")
          : md(g.message);
        return `${md(g.host)} ${md(g.guest)}: ${g.ok ? "" : "**failed**: "}${done}`;
      }),
    ),
    ...section(
      "VMs",
      result.vms
        .filter((v) => !v.idle)
        .map(
          (v) =>
            `${md(v.host)} ${md(v.guest)}: ${v.action} (${v.manager})${v.ok ? "" : " **failed**"}: ${md(v.message)}`,
        ),
    ),
  );

  const failures = [
    ...result.guests
      .filter((g) => !g.ok)
      .map((g) => `${md(g.host)} ${md(g.guest)} (inside the guest): ${md(g.message)}`),
    ...result.vms
      .filter((v) => !v.ok)
      .map((v) => `${md(v.host)} ${md(v.guest)} (${v.action}, ${v.manager}): ${md(v.message)}`),
    ...result.disks
      .filter((d) => d.status === "failed")
      .map((d) => `${md(d.host)} ${md(d.guest)} ${md(d.path)}: ${md(d.message)}`),
    ...result.hosts
      .filter((h) => h.unreachable)
      .map((h) => `${md(h.host)}: unreachable: ${md(h.unreachableReason ?? "no connection")}`),
  ];
  out.push(...section("Failures", failures));
  out.push(
    ...section(
      "Skipped",
      result.disks
        .filter((d) => d.status === "skipped")
        .map((d) => `${md(d.host)} ${md(d.guest)} ${md(d.path)}: ${md(d.message)}`),
    ),
  );
  return `${out.join("\n")}\n`;
}

/** The summary of a plan: what apply would do to each disk, estimated, and why. */
export function formatPlanMarkdown(plan: Plan): string {
  const disks = plan.hosts.flatMap((h) => h.guests.flatMap((g) => g.disks));
  const changes = plan.totals.disksToRewrite > 0;
  const headline = changes
    ? `~${formatBytes(plan.totals.estimatedReclaim)} to reclaim`
    : "nothing to rewrite";
  const out = [`## reclaim plan: ${headline}`, "", md(formatTotals(plan)), ""];

  out.push(
    "| host | guest | disk | action | allocated | at most after | to reclaim | why |",
    "| :-- | :-- | :-- | :-- | --: | --: | --: | :-- |",
  );
  for (const d of disks) {
    const e = d.estimate;
    const changing = e !== undefined && isRewrite(d);
    out.push(
      row([
        md(d.host),
        md(d.guest),
        md(d.path),
        actionWord(d.action),
        bytes(e?.allocatedBefore),
        bytes(e?.allocatedAfter),
        changing ? `~${formatBytes(e.reclaim)}` : "—",
        md(d.reason),
      ]),
    );
  }
  const allocated = disks.reduce((sum, d) => sum + (d.estimate?.allocatedBefore ?? 0), 0);
  out.push(
    row([
      "**total**",
      "",
      `${disks.length} disk${disks.length === 1 ? "" : "s"}`,
      "",
      `**${formatBytes(allocated)}**`,
      `**${formatBytes(allocated - plan.totals.estimatedReclaim)}**`,
      `**~${formatBytes(plan.totals.estimatedReclaim)}**`,
      "",
    ]),
  );
  out.push(
    ...bars(
      disks.map((d) => ({
        label: [d.host, d.guest, d.path],
        ...(d.estimate
          ? {
              before: d.estimate.allocatedBefore,
              after: isRewrite(d) ? d.estimate.allocatedAfter : d.estimate.allocatedBefore,
            }
          : {}),
      })),
      "Estimated: what each image allocates now, and at most after the rewrite.",
    ),
  );

  const guests = plan.hosts.flatMap((h) => h.guests.map((g) => ({ host: h.host, guest: g })));
  out.push(
    ...section(
      "Inside the guests, first",
      guests.flatMap(({ host, guest }) => {
        const zero = guest.zero;
        if (!zero) return [];
        const steps = [
          ...zero.leftovers.map((l) => `remove a fill file an interrupted run left in ${l}`),
          ...zero.steps.map((s) => describeZeroStep(s, zero.os === "windows")),
        ];
        return [`${md(host)} ${md(guest.name)}: ${md(steps.join("; ") || "nothing to do")}`];
      }),
    ),
  );
  out.push(
    ...section(
      "VMs",
      guests.flatMap(({ host, guest }) =>
        guest.vm
          ? [
              `${md(host)} ${md(guest.name)} (${guest.vm.manager}): ${md(describeVm(guest.vm, guest.zero?.fillBytes ?? 0))}`,
            ]
          : [],
      ),
    ),
  );
  out.push(
    ...section("Notes", [
      ...plan.hosts.flatMap((h) => (h.notes ?? []).map((n) => `${md(h.host)}: ${md(n)}`)),
      ...guests.flatMap(({ host, guest }) =>
        guest.notes.map((n) => `${md(host)} ${md(guest.name)}: ${md(n)}`),
      ),
    ]),
  );
  out.push(
    ...section(
      "Unreachable",
      plan.hosts.filter((h) => h.unreachable).map((h) => `${md(h.host)}: ${md(h.unreachable ?? "")}`),
    ),
  );
  return `${out.join("\n")}\n`;
}

interface Sizes {
  before?: number;
  after?: number;
}

/** Measured sizes; a disk left as it was (ok, skipped, failed) allocates after what it did before. */
function diskSizes(d: DiskResult): Sizes {
  const after = d.allocatedAfter ?? d.allocatedBefore;
  return {
    ...(d.allocatedBefore !== undefined ? { before: d.allocatedBefore } : {}),
    ...(after !== undefined ? { after } : {}),
  };
}

function sumSizes(rows: readonly Sizes[]): { before: number; after: number } {
  const measured = rows.filter((r) => r.before !== undefined && r.after !== undefined);
  return {
    before: measured.reduce((sum, r) => sum + (r.before ?? 0), 0),
    after: measured.reduce((sum, r) => sum + (r.after ?? 0), 0),
  };
}

function isRewrite(d: DiskPlan): boolean {
  return d.action === "rewrite" || d.action === "finish";
}

function applySummary(plan: Plan, result: RunResult): string {
  const count = (status: DiskResult["status"]) => result.disks.filter((d) => d.status === status).length;
  const n = result.disks.length;
  const hosts = plan.hosts.length;
  const parts = [
    `${n} disk${n === 1 ? "" : "s"} on ${hosts} host${hosts === 1 ? "" : "s"}: ${count("changed")} changed, ${count("ok")} ok, ${count("skipped")} skipped, ${count("failed")} failed`,
  ];
  const failed = (k: number, what: string) => (k > 0 ? [`${k} ${what}${k === 1 ? "" : "s"} failed`] : []);
  parts.push(
    ...failed(result.guests.filter((g) => !g.ok).length, "guest-side step"),
    ...failed(result.vms.filter((v) => !v.ok && v.action === "shutdown").length, "shutdown"),
    ...failed(result.vms.filter((v) => !v.ok && v.action === "start").length, "start"),
  );
  const unreachable = result.hosts.filter((h) => h.unreachable).length;
  if (unreachable > 0) parts.push(`${unreachable} host${unreachable === 1 ? "" : "s"} unreachable`);
  return `${parts.join("; ")}; ${(result.durationMs / 1000).toFixed(1)} s.`;
}

/**
 * A bar per disk, in a code block so the bars line up: the dark part is what the image allocates
 * after, the light part what was given back, the whole bar what it allocated before.
 */
function bars(disks: readonly (Sizes & { label: string[] })[], caption?: string): string[] {
  const drawn = disks.filter(
    (d): d is Required<Sizes> & { label: string[] } =>
      d.before !== undefined && d.after !== undefined && d.before > 0,
  );
  if (drawn.length === 0) return [];
  const labels = drawn.map((d) => d.label.join(" "));
  const width = Math.max(...labels.map((l) => l.length));
  const lines = drawn.map((d, i) => {
    const change =
      d.after === d.before
        ? "unchanged"
        : `${d.after < d.before ? "-" : "+"}${Math.round((Math.abs(d.before - d.after) * 100) / d.before)}%`;
    return `${(labels[i] as string).padEnd(width)}  ${bar(d.before, d.after)}  ${formatBytes(d.before)} → ${formatBytes(d.after)} (${change})`;
  });
  const fence = "`".repeat(Math.max(3, longestRun(lines.join("\n"), "`") + 1));
  return ["", ...(caption ? [md(caption), ""] : []), `${fence}text`, ...lines, fence];
}

/** `████████░░░░`: dark for what stays, light for what was given back. */
export function bar(before: number, after: number, width = BAR_WIDTH): string {
  let dark = Math.round((Math.min(after, before) / before) * width);
  // A change, however small, shows; so does an image that is not quite empty.
  if (after < before && dark === width) dark = width - 1;
  if (after > 0 && dark === 0) dark = 1;
  return "█".repeat(dark) + "░".repeat(width - dark);
}

function longestRun(text: string, char: string): number {
  let longest = 0;
  let run = 0;
  for (const c of text) {
    run = c === char ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  return longest;
}

function section(title: string, items: readonly string[]): string[] {
  return items.length ? ["", `### ${title}`, "", ...items.map((i) => `- ${i}`)] : [];
}

function row(cells: readonly string[]): string {
  return `| ${cells.join(" | ")} |`;
}

function bytes(n: number | undefined): string {
  return n === undefined ? "—" : formatBytes(n);
}

/**
 * Text as Markdown shows it literally, on one line and safe in a table cell: Markdown's and
 * HTML's special characters are escaped with a backslash (GitHub does not unescape them in code
 * spans, so none are used).
 */
export function md(text: string): string {
  return text.replace(/\r?\n/g, " ").replace(/[\\`*_[\]<>|~&]/g, (c) => `\\${c}`);
}
