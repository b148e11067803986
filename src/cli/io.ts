/** The CLI's window on the world, passed in so tests can run commands in-process. */
import type { Readable, Writable } from "node:stream";

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  /** Whether a person is at a terminal (prompts and listr2 need one). */
  interactive: boolean;
  env: NodeJS.ProcessEnv;
}

export function processIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    interactive: Boolean(process.stdout.isTTY && process.stdin.isTTY) && process.env.CI !== "true",
    env: process.env,
  };
}

export function print(out: Writable, text: string): void {
  out.write(text.endsWith("\n") ? text : `${text}\n`);
}
