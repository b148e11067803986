/** Questions to the person at the terminal. */
import { createInterface } from "node:readline/promises";
import { Writable } from "node:stream";
import type { CliIo } from "./io.js";

/** Reads a line without echoing it (a passphrase): the answer never reaches the terminal or a log. */
export async function askHidden(io: CliIo, question: string): Promise<string> {
  io.stderr.write(question);
  const muted = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: io.stdin, output: muted, terminal: true });
  try {
    return await rl.question("");
  } finally {
    rl.close();
    io.stderr.write("\n");
  }
}

/**
 * Asks for each key's passphrase once, one question at a time, however many hosts connect in
 * parallel with the same key.
 */
export function passphrasePrompter(io: CliIo): (file: string) => Promise<string | undefined> {
  const answers = new Map<string, Promise<string | undefined>>();
  let queue: Promise<unknown> = Promise.resolve();
  return (file) => {
    let answer = answers.get(file);
    if (!answer) {
      answer = queue.then(() => askHidden(io, `Enter passphrase for key ${file}: `));
      queue = answer.catch(() => undefined);
      answers.set(file, answer);
    }
    return answer;
  };
}
