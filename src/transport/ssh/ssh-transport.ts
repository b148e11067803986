/**
 * A Transport over one SSH connection: every command is an exec channel multiplexed on it. The
 * server's session limit (OpenSSH's MaxSessions, 10 by default) is respected by queueing beyond
 * `maxChannels` and by retrying a refused channel open, since a slot frees only after the close
 * handshake.
 */
import type { ClientChannel } from "ssh2";
import { TransportError } from "../../errors.js";
import { quoteArgv } from "../quote.js";
import type { CommandResult, CommandSpec, Transport } from "../transport.js";
import type { SshChain } from "./connect.js";

export interface SshTransportOptions {
  /** Channels open at once; below MaxSessions so a burst never hits the limit. */
  maxChannels?: number;
}

const CHANNEL_OPEN_ATTEMPTS = 8;
/** `timeout` exits 124 when it had to stop the command. */
const TIMEOUT_EXIT = 124;
/** After the remote `timeout` should have acted, how long before we close the channel ourselves. */
const LOCAL_TIMEOUT_GRACE_MS = 10_000;

export function createSshTransport(
  host: string,
  chain: SshChain,
  options: SshTransportOptions = {},
): Transport {
  const slots = new Slots(options.maxChannels ?? 8);
  let lost: string | undefined;
  const inFlight = new Set<(reason: string) => void>();
  const onLost = (reason: string) => {
    if (lost) return;
    lost = reason;
    for (const abort of inFlight) abort(reason);
  };
  chain.client.on("close", () => onLost(`connection to ${host} lost`));
  chain.client.on("error", (error: Error) => onLost(`connection to ${host} failed: ${error.message}`));

  return {
    host,
    async run(spec: CommandSpec): Promise<CommandResult> {
      if (lost) throw new TransportError(lost);
      await slots.acquire();
      try {
        if (lost) throw new TransportError(lost);
        const channel = await openChannel(chain, remoteCommand(spec));
        return await drive(channel, spec, inFlight);
      } finally {
        slots.release();
      }
    },
    async close() {
      chain.close();
    },
  };
}

/**
 * The command line the remote shell runs. LC_ALL=C so that parsers read the messages they were
 * written for; `timeout` so that a command past its time is killed on the remote side too.
 */
export function remoteCommand(spec: CommandSpec): string {
  const argv =
    spec.timeoutMs === undefined
      ? spec.argv
      : ["timeout", "-k", "5", `${Math.ceil(spec.timeoutMs / 1000)}`, ...spec.argv];
  return `LC_ALL=C exec ${quoteArgv(argv)}`;
}

async function openChannel(chain: SshChain, command: string): Promise<ClientChannel> {
  let delay = 20;
  for (let attempt = 1; ; attempt++) {
    try {
      return await new Promise<ClientChannel>((resolve, reject) => {
        chain.client.exec(command, (error, channel) => (error ? reject(error) : resolve(channel)));
      });
    } catch (error) {
      const message = (error as Error).message;
      if (!/open failure|Channel open/i.test(message) || attempt >= CHANNEL_OPEN_ATTEMPTS) {
        throw new TransportError(`cannot open a channel: ${message}`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
    }
  }
}

function drive(
  channel: ClientChannel,
  spec: CommandSpec,
  inFlight: Set<(reason: string) => void>,
): Promise<CommandResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    let exitCode: number | null = null;
    let signal: string | null = null;
    let sawExit = false;
    let timedOut = false;
    const abortLost = (reason: string) => finish(new TransportError(reason));
    inFlight.add(abortLost);
    const stop = (sig: string) => {
      try {
        channel.signal(sig);
      } catch {
        // The channel may already be gone.
      }
      channel.close();
    };
    const timer =
      spec.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            stop("KILL");
          }, spec.timeoutMs + LOCAL_TIMEOUT_GRACE_MS);
    const onAbort = () => stop("TERM");
    spec.signal?.addEventListener("abort", onAbort, { once: true });
    let done = false;
    function finish(error?: Error) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      inFlight.delete(abortLost);
      spec.signal?.removeEventListener("abort", onAbort);
      if (error) return reject(error);
      if (spec.timeoutMs !== undefined && exitCode === TIMEOUT_EXIT) timedOut = true;
      resolve({
        argv: spec.argv,
        exitCode,
        signal,
        stdout,
        stderr,
        durationMs: performance.now() - started,
        timedOut,
      });
    }
    channel.setEncoding("utf8");
    channel.stderr.setEncoding("utf8");
    channel.on("data", (chunk: string) => {
      stdout += chunk;
      spec.onStdout?.(chunk);
    });
    channel.stderr.on("data", (chunk: string) => {
      stderr += chunk;
      spec.onStderr?.(chunk);
    });
    channel.on("exit", (code: number | null, sig?: string) => {
      sawExit = true;
      exitCode = typeof code === "number" ? code : null;
      signal = sig ? `SIG${sig}` : null;
    });
    channel.on("close", () => {
      // No exit status: the channel or the connection went away under the command.
      if (!sawExit && !timedOut && !spec.signal?.aborted)
        return finish(new TransportError("the command ended without an exit status (connection lost?)"));
      finish();
    });
    channel.on("error", (error: Error) => finish(new TransportError(error.message)));
    channel.end(spec.stdin ?? "");
  });
}

/** A counting semaphore: at most `size` holders, the rest wait in order. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(size: number) {
    this.free = size;
  }
  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free += 1;
  }
}
