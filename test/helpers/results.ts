/** Recorded command results for parser tests. */
import { readFileSync } from "node:fs";
import type { CommandResult } from "../../src/transport/transport.js";

export function result(stdout: string, exitCode = 0, stderr = ""): CommandResult {
  return { argv: ["test"], exitCode, signal: null, stdout, stderr, durationMs: 1, timedOut: false };
}

export function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/${name}`, import.meta.url), "utf8");
}
