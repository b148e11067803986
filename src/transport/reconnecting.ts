/**
 * A transport that opens a new connection when the one it had was lost. Commands in flight when
 * it went still fail (their caller decides what that means: a conversion goes on detached on the
 * host); the next command finds a fresh connection, if the host can be reached again within the
 * bounded attempts.
 */
import { ConnectionLostError } from "../errors.js";
import type { CommandResult, CommandSpec, Transport } from "./transport.js";

export interface ReconnectOptions {
  /** Waits before each attempt; their number bounds the attempts. */
  delaysMs?: readonly number[];
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** About two minutes of trying: long enough for a flapping link or a restarted sshd. */
const DEFAULT_DELAYS_MS = [0, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 45_000];

export function reconnecting(
  first: Transport,
  connect: () => Promise<Transport>,
  options: ReconnectOptions = {},
): Transport {
  const delays = options.delaysMs ?? DEFAULT_DELAYS_MS;
  const sleep = options.sleep ?? abortableSleep;
  let current = first;
  let lost = false;
  /** Set once reconnecting failed: later commands fail at once instead of trying all over. */
  let gaveUp: ConnectionLostError | undefined;
  let replacing: Promise<Transport> | undefined;

  /** One reconnection at a time, however many commands are waiting for it. */
  const replace = (signal?: AbortSignal): Promise<Transport> => {
    replacing ??= (async () => {
      let last: unknown;
      for (const delay of delays) {
        await sleep(delay, signal);
        try {
          const next = await connect();
          void current.close().catch(() => {});
          current = next;
          lost = false;
          return next;
        } catch (error) {
          last = error;
        }
      }
      gaveUp = new ConnectionLostError(
        `connection to ${first.host} lost, and ${delays.length} attempts to reconnect failed: ${(last as Error)?.message ?? "unknown"}`,
        true,
      );
      throw gaveUp;
    })().finally(() => {
      replacing = undefined;
    });
    return replacing;
  };

  const use = async (signal?: AbortSignal): Promise<Transport> => {
    if (gaveUp) throw gaveUp;
    return lost ? replace(signal) : current;
  };
  const noteLost = <T>(error: unknown, on: Transport): T => {
    if (error instanceof ConnectionLostError && on === current) lost = true;
    throw error;
  };

  const transport: Transport = {
    host: first.host,
    ...(first.streamsStdin ? { streamsStdin: true } : {}),
    async run(spec: CommandSpec): Promise<CommandResult> {
      const on = await use(spec.signal);
      try {
        return await on.run(spec);
      } catch (error) {
        // Refused before it started (the loss was not noticed yet): safe to send again.
        if (!(error instanceof ConnectionLostError && error.notStarted)) return noteLost(error, on);
        if (on === current) lost = true;
        return (await use(spec.signal)).run(spec);
      }
    },
    async close() {
      await current.close();
    },
  };
  if (first.tunnel) {
    transport.tunnel = async (host: string, port: number) => {
      const on = await use();
      try {
        // biome-ignore lint/style/noNonNullAssertion: every connection of a host is of one kind
        return await on.tunnel!(host, port);
      } catch (error) {
        return noteLost(error, on);
      }
    };
  }
  return transport;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ConnectionLostError("cancelled while reconnecting"));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new ConnectionLostError("cancelled while reconnecting"));
      },
      { once: true },
    );
  });
}
