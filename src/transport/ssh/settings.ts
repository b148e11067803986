/**
 * Where and how to reach a host over SSH, resolved the way operators already configure OpenSSH:
 * inventory variables first (as Ansible passes them to ssh), then ~/.ssh/config (`Host` patterns,
 * first value wins), then OpenSSH's defaults.
 */
import { homedir, userInfo } from "node:os";
import { join } from "node:path";
import SSHConfig from "ssh-config";

export type StrictHostKeyChecking = "yes" | "accept-new" | "no";

export interface SshEndpoint {
  /** The name used for config lookup and in messages. */
  alias: string;
  hostname: string;
  port: number;
  user: string;
  identityFiles: string[];
  /** Only the identity files, not the agent's other keys (IdentitiesOnly). */
  identitiesOnly: boolean;
  /** The name the host key is recorded under (HostKeyAlias), else the hostname. */
  hostKeyAlias?: string;
}

export interface SshSettings extends SshEndpoint {
  /** Jump hosts, outermost first (ProxyJump a,b: connect to a, through it to b, through b here). */
  jumps: SshEndpoint[];
  strictHostKeyChecking: StrictHostKeyChecking;
  knownHostsFiles: string[];
  /** Where a newly accepted key is written: the first user known_hosts file. */
  hashKnownHosts: boolean;
  connectTimeoutMs: number;
  keepaliveIntervalMs: number;
}

export interface SshTarget {
  alias: string;
  address: string;
  port?: number;
  user?: string;
  privateKeyFile?: string;
}

export interface SshOverrides {
  /** --known-hosts: replaces UserKnownHostsFile. */
  knownHostsFile?: string;
  /** --accept-new-host-keys or --insecure-no-host-key-check. */
  strictHostKeyChecking?: StrictHostKeyChecking;
}

type Computed = Record<string, string | string[]>;

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_KEEPALIVE_MS = 15_000;

export function parseSshConfig(text: string): SSHConfig {
  return SSHConfig.parse(text);
}

export function resolveSshSettings(
  target: SshTarget,
  config: SSHConfig | undefined,
  overrides: SshOverrides = {},
): SshSettings {
  const computed = lookup(config, target.address);
  const endpoint = resolveEndpoint(target.alias, target.address, computed, target);
  const strict = overrides.strictHostKeyChecking ?? strictOf(first(computed.stricthostkeychecking));
  const knownHostsFiles = overrides.knownHostsFile
    ? [overrides.knownHostsFile]
    : (
        list(computed.userknownhostsfile) ?? [
          join(homedir(), ".ssh", "known_hosts"),
          join(homedir(), ".ssh", "known_hosts2"),
        ]
      ).map(expandHome);
  const jumpSpec = first(computed.proxyjump);
  return {
    ...endpoint,
    jumps: jumpSpec && jumpSpec.toLowerCase() !== "none" ? parseJumps(jumpSpec, config) : [],
    strictHostKeyChecking: strict,
    knownHostsFiles,
    hashKnownHosts: yes(first(computed.hashknownhosts)),
    connectTimeoutMs: seconds(first(computed.connecttimeout)) ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepaliveIntervalMs: seconds(first(computed.serveraliveinterval)) ?? DEFAULT_KEEPALIVE_MS,
  };
}

function resolveEndpoint(
  alias: string,
  address: string,
  computed: Computed,
  explicit: Partial<SshTarget> = {},
): SshEndpoint {
  const hostname = (first(computed.hostname) ?? address).replace(/%h/g, address).replace(/%%/g, "%");
  const endpoint: SshEndpoint = {
    alias,
    hostname,
    port: explicit.port ?? (Number(first(computed.port)) || 22),
    user: explicit.user ?? first(computed.user) ?? userInfo().username,
    identityFiles: explicit.privateKeyFile
      ? [expandHome(explicit.privateKeyFile)]
      : (list(computed.identityfile) ?? defaultIdentities()).map(expandHome),
    identitiesOnly: yes(first(computed.identitiesonly)),
  };
  const hostKeyAlias = first(computed.hostkeyalias);
  if (hostKeyAlias) endpoint.hostKeyAlias = hostKeyAlias;
  return endpoint;
}

/** `ProxyJump [user@]host[:port],…`; each hop gets its own config, as ssh(1) gives it. */
export function parseJumps(spec: string, config: SSHConfig | undefined): SshEndpoint[] {
  return spec.split(",").map((hop) => {
    const match = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hop.trim());
    const host = (match?.[2] ?? hop).replace(/^\[|\]$/g, "");
    const explicit: Partial<SshTarget> = {};
    if (match?.[1]) explicit.user = match[1];
    if (match?.[3]) explicit.port = Number(match[3]);
    return resolveEndpoint(host, host, lookup(config, host), explicit);
  });
}

function lookup(config: SSHConfig | undefined, host: string): Computed {
  // matchExec: false — `Match exec` would run a shell command named in a config file.
  return config ? (config.compute(host, { ignoreCase: true, matchExec: false }) as Computed) : {};
}

function strictOf(value: string | undefined): StrictHostKeyChecking {
  switch (value?.toLowerCase()) {
    case "no":
    case "off":
    // A config file's "no" still never accepts a changed key: only the loudly named command-line
    // flag skips checking altogether.
    case "accept-new":
      return "accept-new";
    default:
      // yes, ask (nobody to ask in a run), or unset: refuse unknown keys.
      return "yes";
  }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function list(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value : [value]).flatMap((v) => v.split(/\s+/)).filter(Boolean);
}

function yes(value: string | undefined): boolean {
  return value?.toLowerCase() === "yes";
}

function seconds(value: string | undefined): number | undefined {
  const n = Number(value);
  return value !== undefined && Number.isFinite(n) && n > 0 ? n * 1000 : undefined;
}

function expandHome(path: string): string {
  return path.startsWith("~/") ? join(homedir(), path.slice(2)) : path;
}

function defaultIdentities(): string[] {
  return ["id_ed25519", "id_ecdsa", "id_rsa"].map((name) => join(homedir(), ".ssh", name));
}
