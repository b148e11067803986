/**
 * How reclaim authenticates over real SSH: a passphrase-protected key (passphrase from the
 * environment, never from a file) and keys held by a real ssh-agent.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectChain, SshConnectError } from "../../src/transport/ssh/connect.js";
import { resolveSshSettings } from "../../src/transport/ssh/settings.js";
import { createSshTransport } from "../../src/transport/ssh/ssh-transport.js";
import { type KeyPair, Lab, type SshdHost, TEST_USER, writeKnownHosts } from "../lab/sshd.js";

const lab = new Lab();
afterAll(() => lab.close(), 30_000);

let host: SshdHost;
let encrypted: KeyPair;
let agentKey: KeyPair;
let knownHosts: string;
let work: string;

beforeAll(async () => {
  lab.user();
  work = lab.tempDir("reclaim-ssh-auth-");
  encrypted = lab.key("id_encrypted", "correct horse battery staple");
  agentKey = lab.key("id_agent");
  host = await lab.sshd({ address: "127.0.0.6", authorizedKeys: [encrypted.publicKey, agentKey.publicKey] });
  knownHosts = writeKnownHosts(join(work, "known_hosts"), [host]);
}, 60_000);

function settings(identityFiles: string[]) {
  const s = resolveSshSettings(
    { alias: "kvm", address: host.address, port: host.port, user: TEST_USER },
    undefined,
    { knownHostsFile: knownHosts },
  );
  return { ...s, identityFiles };
}

async function whoami(
  chainOptions: Parameters<typeof connectChain>[1],
  identityFiles: string[],
): Promise<string> {
  const chain = await connectChain(settings(identityFiles), chainOptions);
  const transport = createSshTransport("kvm", chain);
  try {
    return (await transport.run({ argv: ["id", "-un"] })).stdout.trim();
  } finally {
    await transport.close();
  }
}

describe("authenticating over SSH", { timeout: 30_000 }, () => {
  it("uses a passphrase-protected key with the passphrase from the environment", async () => {
    expect(await whoami({ passphrase: "correct horse battery staple" }, [encrypted.privateKey])).toBe(
      TEST_USER,
    );
  });

  it("says which key needs a passphrase when none was given", async () => {
    const attempt = whoami({}, [encrypted.privateKey]);
    await expect(attempt).rejects.toBeInstanceOf(SshConnectError);
    await expect(attempt).rejects.toThrow(/id_encrypted is encrypted: set RECLAIM_SSH_PASSPHRASE/);
  });

  it("signs with a key held by a real ssh-agent", async () => {
    const socket = join(work, "agent.sock");
    const agent = spawnSync("ssh-agent", ["-a", socket], { encoding: "utf8" });
    const pid = Number(/SSH_AGENT_PID=(\d+)/.exec(agent.stdout)?.[1]);
    expect(pid).toBeGreaterThan(0);
    lab.defer(() => {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
    });
    execFileSync("ssh-add", [agentKey.privateKey], {
      env: { ...process.env, SSH_AUTH_SOCK: socket },
      stdio: "ignore",
    });
    // No identity files at all: the agent is the only way in.
    expect(await whoami({ agentSocket: socket }, [])).toBe(TEST_USER);
  });

  it("refuses to start without any way to authenticate, and says so", async () => {
    await expect(whoami({}, [join(work, "no-such-key")])).rejects.toThrow(
      /no way to authenticate to reclaim-test@127\.0\.0\.6/,
    );
  });
});
