import { describe, expect, it } from "vitest";
import { batchArgv, parseBatch, runBatch } from "../../../src/transport/batch.js";
import { createLocalTransport } from "../../../src/transport/local.js";
import { batchOutput, unbatch } from "../../helpers/transport.js";

const local = createLocalTransport();

describe("running commands in one batch", () => {
  it("returns each command's exit status, stdout and stderr, in order", async () => {
    const results = await runBatch(local, [
      ["sh", "-c", "echo out; echo err >&2; exit 3"],
      ["printf", "%s", "no newline"],
      ["stat", "--", "/definitely/missing"],
      ["/no/such/program"],
    ]);
    expect(results.map((r) => [r.exitCode, r.stdout, r.stderr !== ""])).toEqual([
      [3, "out\n", true],
      [0, "no newline", false],
      [1, "", true],
      [127, "", true],
    ]);
  });

  it("passes hostile arguments through untouched, never as code", async () => {
    const hostile = [
      "$(touch /tmp/reclaim-pwned)",
      "`id`",
      "a;b",
      "line\nbreak",
      "'quoted'",
      '"dq"',
      "-n",
      "ünï ✓",
      "",
      "*",
    ];
    const [result] = await runBatch(local, [["printf", "%s\\0", ...hostile]]);
    expect(result?.stdout.split("\0").slice(0, -1)).toEqual(hostile);
  });

  it("keeps output with the batch's own marker text intact", async () => {
    const tricky = "@@reclaim 0 0 0 0\nmore\n";
    const results = await runBatch(local, [
      ["printf", "%s", tricky],
      ["echo", "second"],
    ]);
    expect(results.map((r) => r.stdout)).toEqual([tricky, "second\n"]);
  });

  it("runs the commands at the same time", async () => {
    const started = performance.now();
    await runBatch(
      local,
      Array.from({ length: 5 }, () => ["sleep", "0.3"]),
    );
    expect(performance.now() - started).toBeLessThan(1400);
  });

  it("splits a long list into several round trips", async () => {
    const results = await runBatch(
      local,
      Array.from({ length: 70 }, (_, i) => ["echo", String(i)]),
    );
    expect(results.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 70 }, (_, i) => String(i)));
  });

  it("refuses output that does not follow the format", () => {
    expect(() => parseBatch([["true"]], Buffer.from("garbage\n"), 1)).toThrow(/malformed batch output/);
  });

  it("refuses an empty command", () => {
    expect(() => batchArgv([[]])).toThrow(/empty command/);
  });

  it("prints what the scripted test transport answers a batch with", async () => {
    const commands = [
      ["sh", "-c", "printf 'a\\nb'; printf '\u00e9' >&2; exit 4"],
      ["printf", "%s", ""],
    ];
    const raw = await local.run({ argv: batchArgv(commands) });
    expect(raw.stdout).toBe(
      batchOutput([
        { exitCode: 4, stdout: "a\nb", stderr: "\u00e9" },
        { exitCode: 0, stdout: "", stderr: "" },
      ]),
    );
    expect(unbatch(batchArgv(commands))).toEqual(commands);
  });
});
