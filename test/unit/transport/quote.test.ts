import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { quoteArgv, quoteWord } from "../../../src/transport/quote.js";

const hostile = [
  "plain",
  "",
  "with space",
  "it's",
  "$(touch /tmp/pwned)",
  "`id`",
  "a;b",
  "line\nbreak",
  "-rf",
  "ünïcode ✓",
  "\\back",
  '"dq"',
  "*",
];

describe("shell quoting", () => {
  it("leaves safe words alone", () => {
    expect(quoteWord("/var/lib/libvirt/images/web01.qcow2")).toBe("/var/lib/libvirt/images/web01.qcow2");
  });

  it("round-trips every hostile word through a real sh unchanged", () => {
    const script = `for a in ${quoteArgv(hostile)}; do printf '%s\\0' "$a"; done`;
    const out = execFileSync("sh", ["-c", script], { encoding: "utf8" });
    expect(out.split("\0").slice(0, -1)).toEqual(hostile);
  });

  it("refuses a NUL byte, which no argv can carry", () => {
    expect(() => quoteWord("a\0b")).toThrow(/NUL/);
  });
});
