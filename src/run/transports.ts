/** One transport per inventory host for the whole run: local, or one SSH connection. */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import type SSHConfig from "ssh-config";
import type { InventoryHost } from "../inventory/model.js";
import { withBecome } from "../transport/become.js";
import { createLocalTransport } from "../transport/local.js";
import { reconnecting } from "../transport/reconnecting.js";
import type { ConnectOptions } from "../transport/ssh/connect.js";
import { parseSshConfig, resolveSshSettings, type SshOverrides } from "../transport/ssh/settings.js";
import type { Transport } from "../transport/transport.js";

export type Opened = { transport: Transport } | { unreachable: string };

export interface SshContext {
  config?: SSHConfig;
  overrides: SshOverrides;
  agentSocket?: string;
  passphrase?: string;
  /** At a terminal, without RECLAIM_SSH_PASSPHRASE: ask for an encrypted key's passphrase. */
  askPassphrase?: (file: string) => Promise<string | undefined>;
  becomePassword?: string;
}

/** What every SSH connection of a run shares, read once: the client config and the secrets from the environment. */
export async function sshContextFrom(options: {
  sshConfigFile?: string;
  overrides: SshOverrides;
  env: NodeJS.ProcessEnv;
}): Promise<SshContext> {
  const file = options.sshConfigFile ?? join(homedir(), ".ssh", "config");
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    // The default file may be absent; a file the user named must exist.
    if (options.sshConfigFile !== undefined)
      throw new Error(`cannot read ssh config ${file}: ${error.code ?? error.message}`);
    return undefined;
  });
  const context: SshContext = { overrides: options.overrides };
  if (text !== undefined) context.config = parseSshConfig(text);
  if (options.env.SSH_AUTH_SOCK) context.agentSocket = options.env.SSH_AUTH_SOCK;
  if (options.env.RECLAIM_SSH_PASSPHRASE) context.passphrase = options.env.RECLAIM_SSH_PASSPHRASE;
  if (options.env.RECLAIM_BECOME_PASSWORD) context.becomePassword = options.env.RECLAIM_BECOME_PASSWORD;
  return context;
}

export async function openTransport(host: InventoryHost, ssh: SshContext): Promise<Opened> {
  const become = (t: Transport) => (host.become ? withBecome(t, ssh.becomePassword) : t);
  switch (host.connection.kind) {
    case "local": {
      const local = createLocalTransport(host.name);
      // Already root: sudo would add nothing but a dependency.
      return { transport: process.getuid?.() === 0 ? local : become(local) };
    }
    case "ssh": {
      const { address, port, user, privateKeyFile } = host.connection;
      const settings = resolveSshSettings(
        {
          alias: host.name,
          address,
          ...(port ? { port } : {}),
          ...(user ? { user } : {}),
          ...(privateKeyFile ? { privateKeyFile } : {}),
        },
        ssh.config,
        ssh.overrides,
      );
      // Loaded on first use: a run with only local hosts never pays for ssh2.
      const { connectChain, SshConnectError } = await import("../transport/ssh/connect.js");
      const { createSshTransport } = await import("../transport/ssh/ssh-transport.js");
      const connect = async () =>
        createSshTransport(host.name, await connectChain(settings, connectOptionsOf(ssh)));
      try {
        // A connection lost mid-run is opened again for the commands that follow (a conversion
        // it cut keeps running on the host, and the disk's runner reattaches to it).
        return { transport: become(reconnecting(await connect(), connect)) };
      } catch (error) {
        if (error instanceof SshConnectError) return { unreachable: error.message };
        throw error;
      }
    }
  }
}

/** The secrets and prompts every SSH connection of a run shares. */
export function connectOptionsOf(ssh: SshContext): ConnectOptions {
  return {
    ...(ssh.agentSocket ? { agentSocket: ssh.agentSocket } : {}),
    ...(ssh.passphrase ? { passphrase: ssh.passphrase } : {}),
    ...(ssh.askPassphrase ? { askPassphrase: ssh.askPassphrase } : {}),
  };
}
