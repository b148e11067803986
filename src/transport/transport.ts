import type { Duplex } from "node:stream";

/**
 * The narrow interface every task and fact talks to. A transport runs argv (never a shell string
 * assembled from data), reports the result as data and never prints.
 */
export interface CommandSpec {
  /** Program and arguments. Implementations that need a shell (ssh) quote each element. */
  argv: readonly string[];
  /** Kill the command (on the remote side too) after this long. */
  timeoutMs?: number;
  /** Written to the command's standard input, then closed. */
  stdin?: string;
  /**
   * Keep standard input open (after `stdin`) until this signal aborts, then close it. A remote
   * command that reads to end of input lives exactly as long as we want it to, or as long as the
   * connection does: how a lock held on the far side is released when we die.
   */
  holdStdinUntil?: AbortSignal;
  /**
   * While standard input is held open, write a newline this often: the far side can then tell a
   * dead link (silence) from a live one, without waiting for TCP to notice.
   */
  stdinKeepaliveMs?: number;
  /** Called with each chunk of output as it arrives, for progress. */
  onStdout?: (chunk: string) => void;
  onStderr?: (chunk: string) => void;
  signal?: AbortSignal;
}

export interface CommandResult {
  argv: readonly string[];
  /** null when the command was ended by a signal. */
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  timedOut: boolean;
}

export interface Transport {
  /** The inventory host this transport reaches, for messages. */
  readonly host: string;
  /**
   * Standard input is a live stream while the command runs (`holdStdinUntil` is honoured), so a
   * command can tell its caller went away. Not so through a guest agent, which passes input whole.
   */
  readonly streamsStdin?: boolean;
  run(spec: CommandSpec): Promise<CommandResult>;
  /**
   * A TCP stream to host:port opened from the far side (SSH's direct-tcpip), for reaching what only
   * that host can route to, such as its guests. Absent where the far side is this machine.
   */
  tunnel?(host: string, port: number): Promise<Duplex>;
  close(): Promise<void>;
}

/** A one-line account of a failed command, for error messages. */
export function describeFailure(result: CommandResult): string {
  const how = result.timedOut
    ? "timed out"
    : result.signal
      ? `was killed by ${result.signal}`
      : `exited with ${result.exitCode}`;
  const detail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-3).join(" / ");
  return `${result.argv[0] ?? "command"} ${how}${detail ? `: ${detail}` : ""}`;
}
