/**
 * The JUnit XML report (`--junit FILE`) that CI systems render: one testsuite per host, one
 * testcase per guest disk named `guest disk` with the host as its classname; a failed disk is a
 * failure with its message, a skipped one is skipped with the reason. Guest-side steps, shutdowns
 * and starts are testcases of their host too, and an unreachable host is an error. Pure and
 * deterministic: a timestamp appears only when one is passed in.
 */
import { formatBytes } from "../config/units.js";
import type { Plan } from "../plan/plan.js";
import type { DiskResult, GuestZeroResult, RunResult, VmActionResult } from "../run/results.js";

export interface JunitOptions {
  /** When the run started (ISO 8601); written as each testsuite's timestamp. */
  startedAt?: string;
}

interface TestCase {
  name: string;
  classname: string;
  durationMs: number;
  outcome:
    | { kind: "passed"; output: string }
    | { kind: "failure"; message: string; type: string; details: string }
    | { kind: "error"; message: string; type: string }
    | { kind: "skipped"; message: string };
}

export function formatJunit(plan: Plan, result: RunResult, options: JunitOptions = {}): string {
  const suites = plan.hosts.map((host) => ({
    host: host.host,
    cases: testCases(plan, result, host.host),
  }));
  const all = suites.flatMap((s) => s.cases);
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites${attrs({ name: "reclaim apply", ...counts(all), time: seconds(result.durationMs) })}>`,
  ];
  for (const suite of suites) {
    const head = {
      name: suite.host,
      ...counts(suite.cases),
      time: seconds(suite.cases.reduce((sum, c) => sum + c.durationMs, 0)),
      ...(options.startedAt ? { timestamp: junitTimestamp(options.startedAt) } : {}),
    };
    if (suite.cases.length === 0) {
      lines.push(`  <testsuite${attrs(head)}/>`);
      continue;
    }
    lines.push(`  <testsuite${attrs(head)}>`);
    for (const c of suite.cases) lines.push(...formatCase(c));
    lines.push("  </testsuite>");
  }
  lines.push("</testsuites>");
  return `${lines.join("\n")}\n`;
}

/**
 * A host's testcases guest by guest, in the order they ran: inside the guest, shutdown, its
 * disks, start. An unreachable host has one errored testcase for its connection.
 */
function testCases(plan: Plan, result: RunResult, host: string): TestCase[] {
  const recap = result.hosts.find((h) => h.host === host);
  if (recap?.unreachable) {
    return [
      {
        name: "connection",
        classname: host,
        durationMs: 0,
        outcome: {
          kind: "error",
          type: "unreachable",
          message: `unreachable: ${recap.unreachableReason ?? "no connection"}`,
        },
      },
    ];
  }
  const guests = result.guests.filter((g) => g.host === host);
  const vms = result.vms.filter((v) => v.host === host);
  const disks = result.disks.filter((d) => d.host === host);
  const take = <T extends { guest: string }>(
    list: T[],
    guest: string,
    also: (t: T) => boolean = () => true,
  ) => {
    const mine = list.filter((t) => t.guest === guest && also(t));
    for (const t of mine) list.splice(list.indexOf(t), 1);
    return mine;
  };
  const cases: TestCase[] = [];
  const names = plan.hosts.find((h) => h.host === host)?.guests.map((g) => g.name) ?? [];
  for (const guest of names) {
    cases.push(
      ...take(guests, guest).map(guestCase),
      ...take(vms, guest, (v) => v.action === "shutdown").map(vmCase),
      ...take(disks, guest).map(diskCase),
      ...take(vms, guest).map(vmCase),
    );
  }
  // Anything of a guest the plan does not name on this host still gets its testcase.
  cases.push(...guests.map(guestCase), ...vms.map(vmCase), ...disks.map(diskCase));
  return cases;
}

function diskCase(d: DiskResult): TestCase {
  const base = { name: `${d.guest} ${d.path}`, classname: d.host, durationMs: d.durationMs };
  switch (d.status) {
    case "failed": {
      const step = d.steps.find((s) => !s.ok);
      const details = d.steps.map(
        (s) =>
          `${s.kind}: ${s.ok ? "ok" : "FAILED"} (${seconds(s.durationMs)} s)${s.message ? `: ${s.message}` : ""}`,
      );
      return {
        ...base,
        outcome: {
          kind: "failure",
          type: step?.kind ?? "failed",
          message: d.message,
          details: [d.message, ...details].join("\n"),
        },
      };
    }
    case "skipped":
      return { ...base, outcome: { kind: "skipped", message: d.message } };
    default: {
      const sizes =
        d.allocatedBefore !== undefined
          ? `; allocated ${formatBytes(d.allocatedBefore)} → ${formatBytes(d.allocatedAfter ?? d.allocatedBefore)}`
          : "";
      return { ...base, outcome: { kind: "passed", output: `${d.status}: ${d.message}${sizes}` } };
    }
  }
}

function guestCase(g: GuestZeroResult): TestCase {
  const base = { name: `${g.guest} (inside the guest)`, classname: g.host, durationMs: g.durationMs };
  const lines = g.outcomes.map((o) => `${o.mount}: ${o.kind} ${o.ok ? "ok" : "FAILED"}: ${o.message}`);
  return g.ok
    ? { ...base, outcome: { kind: "passed", output: lines.join("\n") || g.message } }
    : {
        ...base,
        outcome: { kind: "failure", type: "guest-side", message: g.message, details: lines.join("\n") },
      };
}

function vmCase(v: VmActionResult): TestCase {
  const base = { name: `${v.guest} (${v.action})`, classname: v.host, durationMs: v.durationMs };
  return v.ok
    ? { ...base, outcome: { kind: "passed", output: `${v.manager}: ${v.message}` } }
    : {
        ...base,
        outcome: {
          kind: "failure",
          type: v.action,
          message: v.message,
          details: `${v.manager}: ${v.message}`,
        },
      };
}

function formatCase(c: TestCase): string[] {
  const open = `    <testcase${attrs({ name: c.name, classname: c.classname, time: seconds(c.durationMs) })}>`;
  const o = c.outcome;
  switch (o.kind) {
    case "passed":
      return [open, `      <system-out>${text(o.output)}</system-out>`, "    </testcase>"];
    case "failure":
      return [
        open,
        `      <failure${attrs({ message: o.message, type: o.type })}>${text(o.details)}</failure>`,
        "    </testcase>",
      ];
    case "error":
      return [open, `      <error${attrs({ message: o.message, type: o.type })}/>`, "    </testcase>"];
    case "skipped":
      return [open, `      <skipped${attrs({ message: o.message })}/>`, "    </testcase>"];
  }
}

function counts(cases: readonly TestCase[]): Record<string, string> {
  const n = (kind: TestCase["outcome"]["kind"]) =>
    String(cases.filter((c) => c.outcome.kind === kind).length);
  return {
    tests: String(cases.length),
    failures: n("failure"),
    errors: n("error"),
    skipped: n("skipped"),
  };
}

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
}

/** JUnit's timestamp has no zone: UTC, to the second. */
function junitTimestamp(iso: string): string {
  return iso.replace(/(\.\d+)?Z$/, "");
}

function attrs(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([k, v]) => ` ${k}="${attribute(v)}"`)
    .join("");
}

/**
 * Characters XML 1.0 cannot hold at all (most control characters, lone surrogates, U+FFFE/FFFF)
 * become U+FFFD, so a stray byte in a command's output cannot make the whole report unreadable.
 */
function xmlSafe(s: string): string {
  let out = "";
  // By code point: a lone surrogate comes as one unit of its own.
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    const allowed =
      c === 0x9 ||
      c === 0xa ||
      c === 0xd ||
      (c >= 0x20 && c <= 0xd7ff) ||
      (c >= 0xe000 && c <= 0xfffd) ||
      c >= 0x10000;
    out += allowed ? ch : "\uFFFD";
  }
  return out;
}

function text(s: string): string {
  return xmlSafe(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Attribute values keep their line breaks and tabs as character references (parsers normalise raw ones to spaces). */
function attribute(s: string): string {
  return text(s)
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;")
    .replace(/\n/g, "&#10;")
    .replace(/\r/g, "&#13;")
    .replace(/\t/g, "&#9;");
}
