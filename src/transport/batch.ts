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

// Few processes besides the commands themselves (one stat, one cat): on a fleet the batch's own
// overhead is paid on every host.
const SCRIPT = `
d=$(mktemp -d "\${TMPDIR:-/tmp}/reclaim-batch.XXXXXX") && cd "$d" || exit 125
trap 'rm -rf "$d"' EXIT
i=0
while [ "$#" -gt 0 ]; do
  n=$1; shift
  refs=""; k=1
  while [ "$k" -le "$n" ]; do refs="$refs \\"\\\${$k}\\""; k=$((k+1)); done
  eval "(LC_ALL=C exec $refs) </dev/null >$i.out 2>$i.err; echo \\$? >$i.rc" &
  shift "$n"
  i=$((i+1))
done
wait
j=0; rcs=""; names=""
while [ "$j" -lt "$i" ]; do read -r rc <"$j.rc"; rcs="$rcs $rc"; names="$names $j.out $j.err"; j=$((j+1)); done
printf '@@reclaim-batch %s\\n' "$i"
printf '%s\\n' $rcs
stat -c %s $names
cat $names
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

/**
 * Splits the batch's output back into one result per command, in order. The output is a header
 * line with the count, one exit status a line, the byte sizes of each command's stdout and stderr,
 * then all of those, concatenated: sizes, not markers, so no output can be mistaken for framing.
 */
export function parseBatch(
  commands: readonly (readonly string[])[],
  output: Buffer,
  durationMs: number,
): CommandResult[] {
  const n = commands.length;
  const lines: string[] = [];
  let at = 0;
  for (let i = 0; i < 1 + 3 * n; i++) {
    const newline = output.indexOf(0x0a, at);
    if (newline < 0) throw new Error(`malformed batch output: ${lines.length} header lines of ${1 + 3 * n}`);
    lines.push(output.subarray(at, newline).toString("latin1"));
    at = newline + 1;
  }
  if (lines[0] !== `@@reclaim-batch ${n}`)
    throw new Error(`malformed batch output: ${String(lines[0]).slice(0, 80)}`);
  const numbers = lines.slice(1).map((line) => {
    if (!/^\d+$/.test(line)) throw new Error(`malformed batch output: ${line.slice(0, 80)}`);
    return Number(line);
  });
  return commands.map((argv, i) => {
    const outLength = numbers[n + 2 * i] as number;
    const errLength = numbers[n + 2 * i + 1] as number;
    const stdout = output.subarray(at, at + outLength).toString("utf8");
    const stderr = output.subarray(at + outLength, at + outLength + errLength).toString("utf8");
    at += outLength + errLength;
    return {
      argv,
      exitCode: numbers[i] as number,
      signal: null,
      stdout,
      stderr,
      durationMs,
      timedOut: false,
    };
  });
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
