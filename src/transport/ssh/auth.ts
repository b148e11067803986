/**
 * Authentication methods in OpenSSH's order: the agent, then each identity file. A key that cannot
 * be read or decrypted is passed over with a note, so the final error says what was tried.
 */
import { readFile } from "node:fs/promises";
import ssh2, { type AnyAuthMethod } from "ssh2";

export interface AuthPlan {
  methods: AnyAuthMethod[];
  /** What was passed over and why, for the error when every method fails. */
  notes: string[];
}

export interface AuthOptions {
  user: string;
  identityFiles: readonly string[];
  identitiesOnly: boolean;
  /** ssh-agent socket (SSH_AUTH_SOCK). */
  agentSocket?: string;
  /** For encrypted identity files; never logged. */
  passphrase?: string;
  /** Asks a person for the passphrase of an encrypted key (only at a terminal). */
  askPassphrase?: (file: string) => Promise<string | undefined>;
}

export async function planAuth(options: AuthOptions): Promise<AuthPlan> {
  const methods: AnyAuthMethod[] = [];
  const notes: string[] = [];
  if (options.agentSocket && !options.identitiesOnly) {
    methods.push({ type: "agent", username: options.user, agent: options.agentSocket });
  }
  for (const file of options.identityFiles) {
    const data = await readFile(file).catch(() => undefined);
    if (!data) continue; // OpenSSH silently skips default identities that do not exist
    let parsed = ssh2.utils.parseKey(data, options.passphrase);
    if (parsed instanceof Error && isEncrypted(parsed) && options.askPassphrase) {
      const asked = await options.askPassphrase(file);
      if (asked !== undefined) parsed = ssh2.utils.parseKey(data, asked);
    }
    if (parsed instanceof Error) {
      notes.push(
        isEncrypted(parsed)
          ? `${file} is encrypted: set RECLAIM_SSH_PASSPHRASE`
          : `${file}: ${parsed.message}`,
      );
      continue;
    }
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (key) methods.push({ type: "publickey", username: options.user, key });
  }
  return { methods, notes };
}

function isEncrypted(error: Error): boolean {
  return /encrypted|passphrase|bad decrypt/i.test(error.message);
}
