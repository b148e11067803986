import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { defaultAuditLogPath, openAuditLog } from "../../../src/cli/audit-log.js";
import type { CliIo } from "../../../src/cli/io.js";
import { deferCleanups } from "../../helpers/cleanup.js";
import { samplePlan, sampleResult } from "../report/sample-run.js";

const { workspace } = deferCleanups();

function testIo(env: NodeJS.ProcessEnv = {}): { io: CliIo; stderr: () => string } {
  let err = "";
  const sink = (append: (s: string) => void) =>
    new Writable({
      write: (chunk, _encoding, done) => {
        append(String(chunk));
        done();
      },
    });
  const io: CliIo = {
    stdout: sink(() => {}),
    stderr: sink((s) => {
      err += s;
    }),
    stdin: Readable.from([]),
    interactive: false,
    env,
  };
  return { io, stderr: () => err };
}

const start = { command: "apply" as const, argv: ["apply", "--yes", "site.yml"], playbooks: ["site.yml"] };

describe("where the audit log goes by default", () => {
  it("is under XDG_STATE_HOME, else under ~/.local/state", () => {
    expect(defaultAuditLogPath({ XDG_STATE_HOME: "/state", HOME: "/home/ops" })).toBe(
      "/state/reclaim/runs.jsonl",
    );
    expect(defaultAuditLogPath({ HOME: "/home/ops" })).toBe("/home/ops/.local/state/reclaim/runs.jsonl");
    // The XDG specification: a relative path is invalid, and ignored.
    expect(defaultAuditLogPath({ XDG_STATE_HOME: "state", HOME: "/home/ops" })).toBe(
      "/home/ops/.local/state/reclaim/runs.jsonl",
    );
    expect(defaultAuditLogPath({})).toBeUndefined();
  });
});

describe("the audit log", () => {
  it("is created owner-only with its directories, and gets one whole line per record", async () => {
    const { dir } = workspace("reclaim-audit-log-");
    const path = join(dir, "state", "reclaim", "runs.jsonl");
    const { io, stderr } = testIo();
    const plan = samplePlan();
    const log = await openAuditLog({ ...start, option: path }, io);
    log.plan(plan);
    log.event({
      type: "step-progress",
      disk: { host: "h", guest: "g", path: "/p" },
      step: "convert",
      percent: 1,
    });
    log.event({ type: "run-end", result: sampleResult(plan) });
    log.end(2);
    expect(stderr()).toBe("");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "state", "reclaim")).mode & 0o777).toBe(0o700);
    const records = readFileSync(path, "utf8")
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(records.map((r) => r.type)).toEqual(["run", "plan", "end"]);
    expect(new Set(records.map((r) => r.run)).size).toBe(1);
    expect(records[0]).toMatchObject({
      command: "apply",
      argv: start.argv,
      playbooks: [{ path: "site.yml" }],
    });
    expect(records[2]).toMatchObject({ exitCode: 2, disks: { failed: 1 } });
  });

  it("is appended to, never replaced", async () => {
    const { dir } = workspace("reclaim-audit-log-");
    const path = join(dir, "runs.jsonl");
    for (const code of [0, 3]) (await openAuditLog({ ...start, option: path }, testIo().io)).end(code);
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines.map((line) => JSON.parse(line).type)).toEqual(["run", "end", "run", "end"]);
  });

  it("that cannot be written is one warning, and the run goes on", async () => {
    const { dir } = workspace("reclaim-audit-log-");
    const path = join(dir, "a-directory");
    mkdirSync(path);
    const { io, stderr } = testIo();
    const log = await openAuditLog({ ...start, option: path }, io);
    log.plan(samplePlan());
    log.end(0);
    expect(stderr()).toBe(
      `reclaim: warning: cannot write the audit log ${path}: it is a directory; the run goes on without it\n`,
    );
  });

  it("that fails while written is one warning too", async () => {
    const { io, stderr } = testIo();
    const log = await openAuditLog({ ...start, option: "/dev/full" }, io);
    log.plan(samplePlan());
    log.end(0);
    expect(stderr().split("\n").filter(Boolean)).toEqual([
      "reclaim: warning: cannot write the audit log /dev/full: no space left on the device; the run goes on without it",
    ]);
  });

  it("is not kept with --no-log, nor without a place for it", async () => {
    const off = testIo({ HOME: "/nonexistent" });
    (await openAuditLog({ ...start, option: false }, off.io)).end(0);
    expect(off.stderr()).toBe("");
    const nowhere = testIo({});
    (await openAuditLog({ ...start, option: undefined }, nowhere.io)).end(0);
    expect(nowhere.stderr()).toMatch(
      /^reclaim: warning: no audit log: neither XDG_STATE_HOME nor HOME is set/,
    );
  });
});
