import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { planAuth } from "../../../../src/transport/ssh/auth.js";

const dir = mkdtempSync(join(tmpdir(), "reclaim-auth-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const key = (name: string, passphrase: string) => {
  const path = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", passphrase, "-f", path, "-C", ""]);
  return path;
};
const plain = key("plain", "");
const locked = key("locked", "s3cret");

describe("planning authentication", () => {
  it("offers the agent first, then each readable identity file, skipping missing ones silently", async () => {
    const plan = await planAuth({
      user: "u",
      identityFiles: [join(dir, "missing"), plain],
      identitiesOnly: false,
      agentSocket: "/run/agent.sock",
    });
    expect(plan.methods.map((m) => m.type)).toEqual(["agent", "publickey"]);
    expect(plan.notes).toEqual([]);
  });

  it("leaves the agent out with IdentitiesOnly", async () => {
    const plan = await planAuth({
      user: "u",
      identityFiles: [plain],
      identitiesOnly: true,
      agentSocket: "/run/agent.sock",
    });
    expect(plan.methods.map((m) => m.type)).toEqual(["publickey"]);
  });

  it("decrypts a key with the passphrase from the environment", async () => {
    const plan = await planAuth({
      user: "u",
      identityFiles: [locked],
      identitiesOnly: false,
      passphrase: "s3cret",
    });
    expect(plan.methods).toHaveLength(1);
  });

  it("asks a person for a key's passphrase when there is a way to ask", async () => {
    const asked: string[] = [];
    const plan = await planAuth({
      user: "u",
      identityFiles: [locked],
      identitiesOnly: false,
      askPassphrase: async (file) => {
        asked.push(file);
        return "s3cret";
      },
    });
    expect(asked).toEqual([locked]);
    expect(plan.methods).toHaveLength(1);
  });

  it("passes over an encrypted key it cannot open and says how to give the passphrase", async () => {
    const plan = await planAuth({ user: "u", identityFiles: [locked], identitiesOnly: false });
    expect(plan.methods).toEqual([]);
    expect(plan.notes).toEqual([`${locked} is encrypted: set RECLAIM_SSH_PASSPHRASE`]);
  });
});
