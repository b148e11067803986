/**
 * Host key checking against known_hosts files: refuse unknown and changed keys unless told,
 * record new ones under accept-new. Messages name the host and the fingerprint.
 */
import { appendFile, mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import {
  fingerprint,
  hostKeyAlgorithmsFor,
  keysFor,
  keyTypeOf,
  knownHostsLine,
  knownHostsName,
  parseKnownHosts,
  verifyHostKey,
} from "./known-hosts.js";
import type { StrictHostKeyChecking } from "./settings.js";

export interface HostKeyCheck {
  /** Algorithms to offer, so the server presents a key of a type on record (empty: any). */
  algorithms: string[];
  /** Resolves to an error message when the key must be refused, undefined when it is accepted. */
  verify(presented: Buffer): Promise<string | undefined>;
}

const GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts";

export async function hostKeyCheck(options: {
  host: string;
  port: number;
  alias?: string;
  files: readonly string[];
  policy: StrictHostKeyChecking;
  hashNew: boolean;
}): Promise<HostKeyCheck> {
  const name = knownHostsName(options.alias ?? options.host, options.port);
  const texts = await Promise.all(
    [...options.files, GLOBAL_KNOWN_HOSTS].map((f) => readFile(f, "utf8").catch(() => "")),
  );
  const entries = texts.flatMap((t) => parseKnownHosts(t));
  const known = keysFor(entries, name);
  return {
    algorithms: options.policy === "no" ? [] : hostKeyAlgorithmsFor(known),
    verify: async (presented) => {
      const print = `${keyTypeOf(presented)} key ${fingerprint(presented)}`;
      if (options.policy === "no") return undefined;
      const verdict = verifyHostKey(entries, name, presented);
      switch (verdict.kind) {
        case "known":
          return undefined;
        case "revoked":
          return `host key for ${name} is REVOKED in known_hosts (${print}); refusing to connect`;
        case "changed":
          return `host key for ${name} has CHANGED (now ${print}; known_hosts has ${verdict.expected.map((k) => `${k.type} ${fingerprint(k.blob)} at line ${k.line}`).join(", ")}). This may be an attack; if the host was reinstalled, remove the old key with ssh-keygen -R and try again`;
        case "unknown": {
          if (options.policy !== "accept-new") {
            return `host key for ${name} is not known (${print}); add it to known_hosts, or pass --accept-new-host-keys to record new keys`;
          }
          const file = options.files[0];
          if (!file)
            return `host key for ${name} is not known and there is no known_hosts file to record it in`;
          await mkdir(dirname(file), { recursive: true, mode: 0o700 });
          await appendFile(file, `${knownHostsLine(name, presented, options.hashNew)}\n`, { mode: 0o600 });
          return undefined;
        }
      }
    },
  };
}
