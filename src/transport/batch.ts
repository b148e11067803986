/**
 * Several independent commands in one round trip: one `sh` runs them all at once and reports each
 * one's exit status, stdout and stderr. Over SSH that is one session instead of one per command,
 * which is where a fleet run spends its time.
 *
 * The script is a constant. Each command's argv travels as positional parameters, prefixed by its
 * length; `eval` only ever sees references like "$1" "$2", never the data itself.
 */
import { TransportError } from "../errors.js";
import { shellScript } from "./quote.js";
import type { CommandResult, CommandSpec, Transport } from "./transport.js";

const SCRIPT = `
d=$(mktemp -d "\${TMPDIR:-/tmp}/reclaim-batch.XXXXXX") || exit 125
trap 'rm -rf "$d"' EXIT
i=0
while [ "$#" -gt 0 ]; do
  n=$1; shift
  refs=""; k=1
  while [ "$k" -le "$n" ]; do refs="$refs \\"\\\${$k}\\""; k=$((k+1)); done
  eval "(LC_ALL=C exec $refs) </dev/null >\\"\\$d/$i.out\\" 2>\\"\\$d/$i.err\\"; echo \\$? >\\"\\$d/$i.rc\\"" &
  shift "$n"
  i=$((i+1))
done
wait
j=0
while [ "$j" -lt "$i" ]; do
  printf '@@reclaim %s %s %s %s\\n' "$j" "$(cat "$d/$j.rc")" "$(wc -c <"$d/$j.out")" "$(wc -c <"$d/$j.err")"
  cat "$d/$j.out" "$d/$j.err"
  j=$((j+1))
done
`;

/** Commands at once in one batch; a few dozen keeps the remote side's process count modest. */
export const MAX_BATCH = 64;

export function batchArgv(commands: readonly (readonly string[])[]): string[] {
  const args: string[] = [];
  for (const argv of commands) {
    if (argv.length === 0) throw new TypeError("empty command in a batch");
    args.push(String(argv.length), ...argv);
  }
  return shellScript(SCRIPT, args);
}

/** Splits the batch's output back into one result per command, in order. */
export function parseBatch(
  commands: readonly (readonly string[])[],
  output: Buffer,
  durationMs: number,
): CommandResult[] {
  const results: CommandResult[] = [];
  let at = 0;
  for (const [index, argv] of commands.entries()) {
    const newline = output.indexOf(0x0a, at);
    const header = output.subarray(at, newline < 0 ? output.length : newline).toString("latin1");
    const match = /^@@reclaim (\d+) (\d+) +(\d+) +(\d+)$/.exec(header.trim());
    if (!match || Number(match[1]) !== index)
      throw new Error(`malformed batch output at command ${index}: ${header.slice(0, 80)}`);
    const outLength = Number(match[3]);
    const errLength = Number(match[4]);
    const start = newline + 1;
    results.push({
      argv,
      exitCode: Number(match[2]),
      signal: null,
      stdout: output.subarray(start, start + outLength).toString("utf8"),
      stderr: output.subarray(start + outLength, start + outLength + errLength).toString("utf8"),
      durationMs,
      timedOut: false,
    });
    at = start + outLength + errLength;
  }
  return results;
}

/** Runs `commands` in one round trip (in chunks of MAX_BATCH); results in the same order. */
export async function runBatch(
  transport: Transport,
  commands: readonly (readonly string[])[],
  timeoutMs = 120_000,
): Promise<CommandResult[]> {
  const results: CommandResult[] = [];
  for (let i = 0; i < commands.length; i += MAX_BATCH) {
    const chunk = commands.slice(i, i + MAX_BATCH);
    const spec: CommandSpec = { argv: batchArgv(chunk), timeoutMs };
    const result = await transport.run(spec);
    if (result.exitCode !== 0) {
      throw new TransportError(
        `batch of ${chunk.length} commands failed (exit ${result.exitCode}): ${result.stderr.trim().slice(0, 200)}`,
      );
    }
    try {
      results.push(...parseBatch(chunk, Buffer.from(result.stdout, "utf8"), result.durationMs));
    } catch (error) {
      throw new TransportError((error as Error).message);
    }
  }
  return results;
}
