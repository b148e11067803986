/**
 * A scripted transport for task and fact tests: each command is answered by the first key its
 * command line contains, and every command that ran is recorded in order.
 *
 * An answer is a result, a list of results (one per call, the last one repeated: a polling
 * sequence), or a function of the call (its argv and how many times that key was asked). Batches
 * (transport/batch.ts) are unpacked: each command in them is answered and recorded on its own, and
 * the batch's output is framed the way its script frames it.
 */
import { batchArgv } from "../../src/transport/batch.js";
import type { CommandResult, CommandSpec, Transport } from "../../src/transport/transport.js";

export interface Answer {
  exitCode?: number;
  stdout?: string;
  stderr?: string;
}

/** A command whose transport fails (a dropped connection, say): `run` rejects with this message. */
export interface Throws {
  throws: string;
}

export type Reply = Answer | Throws;

export interface Call {
  argv: readonly string[];
  /** The command line, arguments joined by spaces. */
  line: string;
  /** How many times the key that matched has been asked, this call included (1 the first time). */
  count: number;
}

export type Script = Reply | readonly Reply[] | ((call: Call) => Reply);

export interface Scripted {
  transport: Transport;
  /** Every command line that ran, in order; a batch's commands one by one. */
  ran: string[];
  /** The same commands as argv, for arguments that contain spaces. */
  argvs: (readonly string[])[];
}

const BATCH_SCRIPT = batchArgv([["true"]])[2];

/** The argvs a batch carries, or undefined when `argv` is not a batch. */
export function unbatch(argv: readonly string[]): string[][] | undefined {
  if (argv[0] !== "sh" || argv[1] !== "-c" || argv[2] !== BATCH_SCRIPT) return undefined;
  const args = argv.slice(4);
  const commands: string[][] = [];
  for (let i = 0; i < args.length; ) {
    const n = Number(args[i]);
    commands.push(args.slice(i + 1, i + 1 + n));
    i += 1 + n;
  }
  return commands;
}

/** What a batch's script prints for these results: header, statuses, sizes, then the output. */
export function batchOutput(results: readonly Answer[]): string {
  const lines = [`@@reclaim-batch ${results.length}`];
  for (const r of results) lines.push(String(r.exitCode ?? 0));
  for (const r of results)
    lines.push(String(Buffer.byteLength(r.stdout ?? "")), String(Buffer.byteLength(r.stderr ?? "")));
  return `${lines.join("\n")}\n${results.map((r) => (r.stdout ?? "") + (r.stderr ?? "")).join("")}`;
}

export function scripted(
  answers: Record<string, Script>,
  options: { host?: string; fallback?: Reply } = {},
): Scripted {
  const ran: string[] = [];
  const argvs: (readonly string[])[] = [];
  const counts = new Map<string, number>();
  const answer = (argv: readonly string[]): Reply => {
    const line = argv.join(" ");
    ran.push(line);
    argvs.push(argv);
    const key = Object.keys(answers).find((k) => line.includes(k));
    if (key === undefined) return options.fallback ?? {};
    const count = (counts.get(key) ?? 0) + 1;
    counts.set(key, count);
    const script = answers[key] as Script;
    if (typeof script === "function") return script({ argv, line, count });
    if (Array.isArray(script)) return script[Math.min(count, script.length) - 1] ?? {};
    return script as Reply;
  };
  const resultOf = (argv: readonly string[], a: Answer): CommandResult => ({
    argv,
    exitCode: a.exitCode ?? 0,
    signal: null,
    stdout: a.stdout ?? "",
    stderr: a.stderr ?? "",
    durationMs: 1,
    timedOut: false,
  });
  const transport: Transport = {
    host: options.host ?? "vm",
    run: async (spec: CommandSpec) => {
      const inner = unbatch(spec.argv);
      if (inner) {
        const replies = inner.map(answer);
        const failed = replies.find((r): r is Throws => "throws" in r);
        if (failed) throw new Error(failed.throws);
        return resultOf(spec.argv, { stdout: batchOutput(replies as Answer[]) });
      }
      const reply = answer(spec.argv);
      if ("throws" in reply) throw new Error(reply.throws);
      return resultOf(spec.argv, reply);
    },
    close: async () => {},
  };
  return { transport, ran, argvs };
}
