/**
 * OpenSSH's known_hosts, read the way ssh(1) reads it: plain and hashed (|1|salt|hash) host
 * names, `[host]:port` entries, wildcards and negations, and @revoked keys. ssh2 parses none of it.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";

export interface KnownKey {
  /** Key type as written, e.g. ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256. */
  type: string;
  /** The key blob (SSH wire format), base64-decoded. */
  blob: Buffer;
  revoked: boolean;
  line: number;
}

interface Entry extends KnownKey {
  patterns: string[];
}

export type HostKeyVerdict =
  | { kind: "known"; line: number }
  | { kind: "unknown" }
  | { kind: "changed"; expected: KnownKey[] }
  | { kind: "revoked"; line: number };

/** The name a host is recorded under: `host`, or `[host]:port` when the port is not 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** OpenSSH's fingerprint form: SHA256:base64 without padding. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The key type written inside a key blob (its first SSH string). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return "unknown";
  const length = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + length).toString("latin1");
}

export function parseKnownHosts(text: string): Entry[] {
  const entries: Entry[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]?.startsWith("@")) marker = fields.shift();
    const [hosts, type, key] = fields;
    if (!hosts || !type || !key || marker === "@cert-authority") return;
    const blob = Buffer.from(key, "base64");
    if (blob.length === 0) return;
    entries.push({ patterns: hosts.split(","), type, blob, revoked: marker === "@revoked", line: index + 1 });
  });
  return entries;
}

/** Does one known_hosts host field (a comma list) name `name`? A negated match wins. */
function hostMatches(patterns: readonly string[], name: string): boolean {
  let matched = false;
  for (const pattern of patterns) {
    if (pattern.startsWith("|1|")) {
      if (hashedMatches(pattern, name)) matched = true;
      continue;
    }
    const negated = pattern.startsWith("!");
    if (wildcard(negated ? pattern.slice(1) : pattern).test(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

function hashedMatches(pattern: string, name: string): boolean {
  const [, , salt, hash] = pattern.split("|");
  if (!salt || !hash) return false;
  return createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === hash;
}

function wildcard(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`, "i");
}

/** The known keys of `name`, revoked ones included. */
export function keysFor(entries: readonly Entry[], name: string): KnownKey[] {
  return entries
    .filter((e) => hostMatches(e.patterns, name))
    .map(({ type, blob, revoked, line }) => ({ type, blob, revoked, line }));
}

/** Decide on a key the server presented, as ssh(1) would. */
export function verifyHostKey(entries: readonly Entry[], name: string, presented: Buffer): HostKeyVerdict {
  const keys = keysFor(entries, name);
  const revoked = entries.find((e) => e.revoked && e.blob.equals(presented));
  if (revoked) return { kind: "revoked", line: revoked.line };
  const match = keys.find((k) => !k.revoked && k.blob.equals(presented));
  if (match) return { kind: "known", line: match.line };
  const expected = keys.filter((k) => !k.revoked);
  return expected.length === 0 ? { kind: "unknown" } : { kind: "changed", expected };
}

/** A known_hosts line for a newly accepted key; hashed when the user's ssh does (HashKnownHosts). */
export function knownHostsLine(name: string, blob: Buffer, hashed: boolean): string {
  const type = keyTypeOf(blob);
  const key = blob.toString("base64");
  if (!hashed) return `${name} ${type} ${key}`;
  const salt = randomBytes(20);
  const hash = createHmac("sha1", salt).update(name).digest("base64");
  return `|1|${salt.toString("base64")}|${hash} ${type} ${key}`;
}

/**
 * The host key algorithms to offer for a host we know: only the types on record, so the server
 * presents a key we can check rather than one of another type (ssh(1) orders them the same way).
 */
export function hostKeyAlgorithmsFor(keys: readonly KnownKey[]): string[] {
  const out: string[] = [];
  for (const key of keys) {
    if (key.revoked) continue;
    const algorithms = key.type === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [key.type];
    for (const a of algorithms) if (!out.includes(a)) out.push(a);
  }
  return out;
}
