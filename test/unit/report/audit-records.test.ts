import { describe, expect, it } from "vitest";
import {
  auditLine,
  endRecord,
  eventRecord,
  planRecord,
  REDACTED,
  runRecord,
  SECRET_OPTIONS,
  withoutSecrets,
} from "../../../src/report/audit-records.js";
import type { RunEvent } from "../../../src/run/events.js";
import { MAIL01, samplePlan, sampleResult, WEB01 } from "./sample-run.js";

const plan = samplePlan();
const result = sampleResult(plan);
const disks = plan.hosts.flatMap((h) => h.guests.flatMap((g) => g.disks));
const context = { time: new Date("2026-01-15T02:00:00.000Z"), run: "0123456789abcdef" };

describe("the command line in the audit log", () => {
  it("lists no secret-bearing option today: secrets come from the environment or a prompt", () => {
    expect(SECRET_OPTIONS).toEqual([]);
    const argv = ["apply", "--yes", "-i", "inventory.yml", "--log", "runs.jsonl", "site.yml"];
    expect(withoutSecrets(argv)).toEqual(argv);
  });

  it("leaves out the value of a secret-bearing option, written either way", () => {
    const secret = ["--password"];
    expect(withoutSecrets(["apply", "--password", "hunter2", "x.yml"], secret)).toEqual([
      "apply",
      "--password",
      REDACTED,
      "x.yml",
    ]);
    expect(withoutSecrets(["apply", "--password=hunter2", "x.yml"], secret)).toEqual([
      "apply",
      `--password=${REDACTED}`,
      "x.yml",
    ]);
    // After `--` there are only arguments.
    expect(withoutSecrets(["apply", "--", "--password", "x.yml"], secret)).toEqual([
      "apply",
      "--",
      "--password",
      "x.yml",
    ]);
  });
});

describe("the audit log's records", () => {
  it("starts with who ran what, where, from which files", () => {
    const start = {
      command: "apply" as const,
      argv: ["apply", "--yes", "site.yml"],
      cwd: "/srv/ops",
      toolVersion: "0.1.0",
      user: "ops",
      uid: 1000,
      hostname: "bastion",
      playbooks: [{ path: "site.yml", sha256: "ab".repeat(32) }],
    };
    expect(JSON.parse(auditLine(runRecord(start), context))).toEqual({
      time: "2026-01-15T02:00:00.000Z",
      run: "0123456789abcdef",
      type: "run",
      ...start,
    });
  });

  it("gives the plan in numbers, with the hosts it could not reach", () => {
    expect(planRecord(plan)).toEqual({
      type: "plan",
      hosts: 3,
      ...plan.totals,
      unreachable: [{ host: "kvm03", reason: "connect ECONNREFUSED 192.0.2.13:22" }],
    });
  });

  it("says per disk what was done, with the bytes before and after", () => {
    const done = result.disks.find((d) => d.path === WEB01);
    if (!done) throw new Error("the sample has web01");
    expect(eventRecord({ type: "disk-end", result: done })).toEqual({
      type: "disk-end",
      host: "kvm01",
      guest: "web01",
      path: WEB01,
      action: "rewrite",
      status: "changed",
      message: "rewritten and verified",
      allocatedBefore: done.allocatedBefore,
      allocatedAfter: done.allocatedAfter,
      durationMs: 180_900,
    });
  });

  it("leaves out progress and the run's own start and end", () => {
    const disk = { host: "kvm01", guest: "web01", path: WEB01 };
    expect(eventRecord({ type: "step-progress", disk, step: "convert", percent: 50 })).toBeUndefined();
    expect(eventRecord({ type: "run-start", plan })).toBeUndefined();
    expect(eventRecord({ type: "run-end", result })).toBeUndefined();
  });

  it("never carries a plan's facts: identities, convert options, filesystems", () => {
    const events: RunEvent[] = [
      ...disks.map((d): RunEvent => ({ type: "disk-start", disk: d, plan: d })),
      ...plan.hosts.flatMap((h) =>
        h.guests.flatMap((g): RunEvent[] =>
          g.zero ? [{ type: "guest-zero-start", host: h.host, guest: g.name, plan: g.zero }] : [],
        ),
      ),
      ...result.guests.map((r): RunEvent => ({ type: "guest-zero-end", result: r })),
      ...result.vms.map((r): RunEvent => ({ type: "vm-end", result: r })),
    ];
    expect(events.length).toBeGreaterThan(disks.length);
    const text = events.map((e) => JSON.stringify(eventRecord(e))).join("\n");
    for (const fact of ["identity", "inode", "convert", "filesystems", "options", "leftovers"])
      expect(text).not.toContain(`"${fact}"`);
  });

  it("ends with the exit code, what stopped the run, and the totals", () => {
    expect(endRecord(4, undefined, "2 problems in the configuration")).toEqual({
      type: "end",
      exitCode: 4,
      error: "2 problems in the configuration",
    });
    const end = endRecord(2, result);
    const reclaimed = result.hosts.reduce((sum, h) => sum + h.reclaimed, 0);
    expect(end).toMatchObject({
      type: "end",
      exitCode: 2,
      disks: { ok: 1, changed: 1, skipped: 2, failed: 1 },
      vmsFailed: 1,
      unreachableHosts: 1,
      reclaimed,
    });
    expect(result.disks.find((d) => d.path === MAIL01)?.status).toBe("failed");
  });

  it("is one line, time and run first, without the fields that have no value", () => {
    const line = auditLine(endRecord(0), context);
    expect(line).toBe(
      '{"time":"2026-01-15T02:00:00.000Z","run":"0123456789abcdef","type":"end","exitCode":0}\n',
    );
  });
});
