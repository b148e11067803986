/**
 * A Transport over one SSH connection: every command is an exec channel multiplexed on it. The
 * server's session limit (OpenSSH's MaxSessions, 10 by default) is respected by queueing beyond
 * `maxChannels` and by retrying a refused channel open, since a slot frees only after the close
 * handshake (and, on a server with a lower limit, when one of our other commands ends).
 */
import type { Duplex } from "node:stream";
import type { ClientChannel } from "ssh2";
import { ConnectionLostError, TransportError } from "../../errors.js";
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
/** After closing a timed-out channel ourselves, how long to wait for the server's close. */
const CLOSE_GRACE_MS = 5_000;

export function createSshTransport(
  host: string,
  chain: SshChain,
  options: SshTransportOptions = {},
): Transport {
  const slots = new Slots(options.maxChannels ?? 8);
  const busy = new Busy();
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
    streamsStdin: true,
    async run(spec: CommandSpec): Promise<CommandResult> {
      if (lost) throw new ConnectionLostError(lost, true);
      await slots.acquire();
      try {
        if (lost) throw new ConnectionLostError(lost, true);
        const channel = await openChannel(chain, remoteCommand(spec), busy);
        busy.open += 1;
        try {
          return await drive(channel, spec, inFlight);
        } finally {
          busy.closed();
        }
      } finally {
        slots.release();
      }
    },
    tunnel(to: string, port: number): Promise<Duplex> {
      if (lost) return Promise.reject(new TransportError(lost));
      return new Promise((resolve, reject) => {
        chain.client.forwardOut("127.0.0.1", 0, to, port, (error, stream) =>
          error
            ? reject(new TransportError(`cannot reach ${to}:${port} from ${host}: ${error.message}`))
            : resolve(stream),
        );
      });
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

async function openChannel(chain: SshChain, command: string, busy: Busy): Promise<ClientChannel> {
  let delay = 20;
  for (let attempt = 1; ; ) {
    try {
      return await new Promise<ClientChannel>((resolve, reject) => {
        chain.client.exec(command, (error, channel) => (error ? reject(error) : resolve(channel)));
      });
    } catch (error) {
      const message = (error as Error).message;
      if (!/open failure|Channel open/i.test(message))
        throw new TransportError(`cannot open a channel: ${message}`);
      // Refused while our own commands hold the server's sessions: it is at MaxSessions, and a
      // session frees when one of them ends. That is not a failed attempt, however long they run:
      // counting it let a burst beyond MaxSessions fail, because commands queued behind ours took
      // each freed session first and the retries ran out (3 of 100 commands on MaxSessions 5).
      if (busy.open === 0 && ++attempt > CHANNEL_OPEN_ATTEMPTS)
        throw new TransportError(`cannot open a channel: ${message}`);
      await busy.nextCloseOr(delay);
      delay = Math.min(delay * 2, 1000);
    }
  }
}

/** Channels established on the connection, and a wake-up when one of them ends. */
class Busy {
  open = 0;
  private waiters: (() => void)[] = [];
  closed(): void {
    this.open -= 1;
    for (const wake of this.waiters.splice(0)) wake();
  }
  /**
   * Resolves shortly after the next channel ends (the server frees its session only once it has
   * processed our side of the close), or after `ms`, whichever comes first.
   */
  nextCloseOr(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        setTimeout(resolve, 10);
      });
    });
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
    const abortLost = (reason: string) => finish(new ConnectionLostError(reason));
    inFlight.add(abortLost);
    const stop = (sig: string) => {
      try {
        sendSignal(channel, sig);
      } catch {
        // The channel may already be gone.
      }
      channel.close();
    };
    let closeTimer: NodeJS.Timeout | undefined;
    const timer =
      spec.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            stop("KILL");
            // A peer that vanished (a guest powered off behind a tunnel) never answers the close:
            // the command is over for us all the same.
            closeTimer = setTimeout(
              () => finish(new TransportError("no answer after the timeout (connection lost?)")),
              CLOSE_GRACE_MS,
            );
          }, spec.timeoutMs + LOCAL_TIMEOUT_GRACE_MS);
    const onAbort = () => stop("TERM");
    spec.signal?.addEventListener("abort", onAbort, { once: true });
    let done = false;
    let keepalive: NodeJS.Timeout | undefined;
    function finish(error?: Error) {
      if (done) return;
      done = true;
      clearInterval(keepalive);
      clearTimeout(timer);
      clearTimeout(closeTimer);
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
    const onExit = (code?: number | null, sig?: string) => {
      if (sawExit || (typeof code !== "number" && typeof sig !== "string")) return;
      sawExit = true;
      exitCode = typeof code === "number" ? code : null;
      // ssh2 already names it SIGTERM, not TERM as the wire does.
      signal = sig ? (sig.startsWith("SIG") ? sig : `SIG${sig}`) : null;
    };
    channel.on("exit", onExit);
    channel.on("close", (code?: number | null, sig?: string) => {
      // ssh2 emits "exit" while it parses a read; when a fast command's exec reply, exit status and
      // close arrive in one read, that is before we listen (we attach after the exec callback's
      // promise settles). "close" carries the same status (ssh2 documents it), so take it there.
      onExit(code, sig);
      // No exit status: the channel or the connection went away under the command.
      if (!sawExit && !timedOut && !spec.signal?.aborted)
        return finish(new ConnectionLostError("the command ended without an exit status (connection lost?)"));
      finish();
    });
    channel.on("error", (error: Error) => finish(new TransportError(error.message)));
    if (spec.holdStdinUntil && !spec.holdStdinUntil.aborted) {
      channel.write(spec.stdin ?? "");
      keepalive = spec.stdinKeepaliveMs
        ? setInterval(() => channel.write("\n"), spec.stdinKeepaliveMs)
        : undefined;
      keepalive?.unref();
      spec.holdStdinUntil.addEventListener(
        "abort",
        () => {
          clearInterval(keepalive);
          channel.end();
        },
        { once: true },
      );
    } else channel.end(spec.stdin ?? "");
    // Aborted while the command waited for a channel: "abort" has fired already, and the command
    // would otherwise run to its end.
    if (spec.signal?.aborted) onAbort();
  });
}

interface ChannelInternals {
  outgoing?: { id?: number; state?: string };
  _client?: { _protocol?: { signal?: (id: number, name: string) => void } };
}

/**
 * Asks the server to signal the command (OpenSSH signals its process group). Not through
 * channel.signal(): ssh2 sends nothing there once our side has sent EOF, and drive() sends EOF
 * at once (after stdin), so an abort or a local timeout never reached the remote command and
 * the close then waited for it to end by itself. The protocol allows the request after EOF
 * (RFC 4254 5.3, 6.9), so it goes out through ssh2's protocol object, as channel.signal() does.
 */
function sendSignal(channel: ClientChannel, sig: string): void {
  const { outgoing, _client } = channel as unknown as ChannelInternals;
  if (outgoing?.id === undefined || (outgoing.state !== "open" && outgoing.state !== "eof")) return;
  const send = _client?._protocol?.signal;
  if (typeof send === "function") send.call(_client?._protocol, outgoing.id, sig);
  else channel.signal(sig);
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
