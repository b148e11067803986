/**
 * Opens one SSH connection (through any jump hosts) with host key checking, the auth plan, a
 * connect timeout, keepalive and TCP_NODELAY, retrying transient network failures with backoff.
 */
import { type Socket, connect as tcpConnect } from "node:net";
import type { Duplex } from "node:stream";
// ssh2 is CommonJS: Node's ESM loader gives its exports only through the default import.
import ssh2, { type Client } from "ssh2";
import { planAuth } from "./auth.js";
import { hostKeyCheck } from "./host-keys.js";
import type { SshEndpoint, SshSettings } from "./settings.js";

export class SshConnectError extends Error {
  constructor(
    message: string,
    /** Worth trying again (refused, reset, timed out) rather than final (host key, auth). */
    readonly transient: boolean,
  ) {
    super(message);
  }
}

export interface ConnectOptions {
  agentSocket?: string;
  passphrase?: string;
  askPassphrase?: (file: string) => Promise<string | undefined>;
  /** Open the first hop's stream through another connection (a guest through its hypervisor). */
  via?: (host: string, port: number) => Promise<Duplex>;
  /** Attempts for transient failures, and the first backoff (doubled each time). */
  attempts?: number;
  backoffMs?: number;
}

export interface SshChain {
  /** The connection to the target, the last of the chain. */
  client: Client;
  close(): void;
}

export async function connectChain(settings: SshSettings, options: ConnectOptions = {}): Promise<SshChain> {
  const attempts = options.attempts ?? 3;
  let backoff = options.backoffMs ?? 300;
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectOnce(settings, options);
    } catch (error) {
      if (!(error instanceof SshConnectError) || !error.transient || attempt >= attempts) throw error;
      await new Promise((r) => setTimeout(r, backoff));
      backoff *= 2;
    }
  }
}

async function connectOnce(settings: SshSettings, options: ConnectOptions): Promise<SshChain> {
  const hops: SshEndpoint[] = [...settings.jumps, settings];
  for (const hop of hops) {
    const problem = unusableName(hop);
    if (problem) throw new SshConnectError(problem, false);
  }
  const clients: Client[] = [];
  const close = () => {
    for (const c of [...clients].reverse()) c.end();
  };
  try {
    const first = hops[0] as SshEndpoint;
    let sock: Duplex | undefined = options.via
      ? await options.via(first.hostname, first.port).catch((error: Error) => {
          throw new SshConnectError(error.message, false);
        })
      : undefined;
    for (const [i, hop] of hops.entries()) {
      const client = await connectHop(hop, settings, sock, options);
      clients.push(client);
      const next = hops[i + 1];
      if (next) sock = await forward(client, hop, next);
    }
    const client = clients.at(-1) as Client;
    return { client, close };
  } catch (error) {
    close();
    throw error;
  }
}

/**
 * A name the resolver would read otherwise than written: it takes a C string, so a NUL ends it
 * early and `"10.0.0.1\0anything"` would reach 10.0.0.1 (and, accepting new keys, record that
 * host's key under the whole name). No host or user name holds a control character.
 */
function unusableName(hop: SshEndpoint): string | undefined {
  const control = (text: string) => [...text].some((c) => c < " " || c === "\u007f");
  // Escaped, so that the message stays one line and shows what is there.
  const shown = (text: string) => JSON.stringify(text).replaceAll("\u007f", "\\u007f");
  if (control(hop.hostname))
    return `${shown(hop.hostname)} is not a host name or address: it holds a control character`;
  if (control(hop.user)) return `${shown(hop.user)} is not a user name: it holds a control character`;
  return undefined;
}

function forward(client: Client, via: SshEndpoint, to: SshEndpoint): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    client.forwardOut("127.0.0.1", 0, to.hostname, to.port, (error, stream) => {
      if (error)
        reject(
          new SshConnectError(
            `cannot reach ${to.hostname}:${to.port} through jump host ${via.alias}: ${error.message}`,
            true,
          ),
        );
      else resolve(stream);
    });
  });
}

async function connectHop(
  hop: SshEndpoint,
  settings: SshSettings,
  via: Duplex | undefined,
  options: ConnectOptions,
): Promise<Client> {
  const where = `${hop.user}@${hop.hostname}:${hop.port}`;
  const [keys, auth] = await Promise.all([
    hostKeyCheck({
      host: hop.hostname,
      port: hop.port,
      ...(hop.hostKeyAlias ? { alias: hop.hostKeyAlias } : {}),
      files: settings.knownHostsFiles,
      policy: settings.strictHostKeyChecking,
      hashNew: settings.hashKnownHosts,
    }),
    planAuth({
      user: hop.user,
      identityFiles: hop.identityFiles,
      identitiesOnly: hop.identitiesOnly,
      ...(options.agentSocket ? { agentSocket: options.agentSocket } : {}),
      ...(options.passphrase ? { passphrase: options.passphrase } : {}),
      ...(options.askPassphrase ? { askPassphrase: options.askPassphrase } : {}),
    }),
  ]);
  if (auth.methods.length === 0) {
    throw new SshConnectError(
      `no way to authenticate to ${where}: no ssh-agent and no usable identity file${auth.notes.length ? ` (${auth.notes.join("; ")})` : ""}`,
      false,
    );
  }
  const sock = via ?? (await tcp(hop, settings.connectTimeoutMs));
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let refusal: string | undefined;
    let settled = false;
    const fail = (error: SshConnectError) => {
      if (settled) return;
      settled = true;
      client.end();
      reject(error);
    };
    client.on("ready", () => {
      settled = true;
      resolve(client);
    });
    client.on("error", (error: Error & { level?: string; code?: string }) => {
      if (refusal) return fail(new SshConnectError(refusal, false));
      if (error.level === "client-authentication") {
        const tried = auth.methods.map((m) => (m.type === "agent" ? "ssh-agent" : "key")).join(", ");
        return fail(
          new SshConnectError(
            `authentication to ${where} failed (tried ${tried}${auth.notes.length ? `; ${auth.notes.join("; ")}` : ""})`,
            false,
          ),
        );
      }
      fail(new SshConnectError(`${where}: ${error.message}`, isTransient(error)));
    });
    client.on("close", () =>
      fail(new SshConnectError(refusal ?? `${where}: connection closed during the handshake`, !refusal)),
    );
    client.connect({
      sock,
      username: hop.user,
      readyTimeout: settings.connectTimeoutMs,
      keepaliveInterval: settings.keepaliveIntervalMs,
      keepaliveCountMax: 3,
      authHandler: auth.methods,
      ...(keys.algorithms.length ? { algorithms: { serverHostKey: keys.algorithms as never } } : {}),
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        keys.verify(key).then(
          (problem) => {
            refusal = problem;
            verify(problem === undefined);
          },
          (error: Error) => {
            refusal = `cannot check the host key of ${where}: ${error.message}`;
            verify(false);
          },
        );
      },
    });
  });
}

function tcp(hop: SshEndpoint, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: hop.hostname, port: hop.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new SshConnectError(
          `${hop.hostname}:${hop.port}: connection timed out after ${timeoutMs / 1000} s`,
          false,
        ),
      );
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      // ssh2 leaves Nagle on: one command took ~55 ms instead of ~13 ms on loopback.
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new SshConnectError(
          `${hop.hostname}:${hop.port}: ${error.code ?? error.message}`,
          isTransient(error),
        ),
      );
    });
  });
}

/**
 * Refused or reset connections are retried (sshd restarting, MaxStartups dropping a burst); a
 * timeout is not, since a host that is down would make each retry cost the whole timeout again.
 */
function isTransient(error: { code?: string | undefined }): boolean {
  return ["ECONNREFUSED", "ECONNRESET", "EPIPE", "EAI_AGAIN"].includes(error.code ?? "");
}
