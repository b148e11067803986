/**
 * A fact is a command and a pure parser of its result (pyinfra's model): the parser is tested on
 * recorded output, the command runs on any transport.
 */
import type { CommandResult, Transport } from "../transport/transport.js";

export interface Fact<Args, Value> {
  /** What the fact is, for messages ("image info"). */
  name: string;
  argv(args: Args): string[];
  parse(result: CommandResult, args: Args): Value;
}

export async function gather<Args, Value>(
  transport: Transport,
  fact: Fact<Args, Value>,
  args: Args,
  timeoutMs = 60_000,
): Promise<Value> {
  const result = await transport.run({ argv: fact.argv(args), timeoutMs });
  return fact.parse(result, args);
}
