/**
 * The SSH lab itself, proven with the real OpenSSH client: real sshd hosts on loopback addresses
 * and in network namespaces, strict host-key checking against generated known_hosts files, a
 * jump host, an address that fails at once, and nothing of ours left running after stop().
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSsh, sshArgs, startSsh, tcpProbe, writeClientConfig } from "../lab/client.js";
import { IP } from "../lab/netns.js";
import { descendants, isAlive, type ProcInfo, processesMentioning, procInfo, sleep } from "../lab/proc.js";
import {
  ensureTestUser,
  type KeyPair,
  killSessions,
  Lab,
  type SshdHost,
  sessionPids,
  TEST_USER,
  writeKnownHosts,
} from "../lab/sshd.js";

const lab = new Lab();
afterAll(() => lab.close(), 30_000);

let dir: string;
let key: KeyPair;
beforeAll(() => {
  ensureTestUser();
  dir = lab.tempDir("reclaim-sshd-lab-test-");
  key = generateClientKey();
});

function generateClientKey(): KeyPair {
  return lab.key("id_client");
}

let khCount = 0;
function knownHosts(hosts: SshdHost[]): string {
  return writeKnownHosts(join(dir, `known_hosts.${++khCount}`), hosts);
}

function sshTo(host: SshdHost, kh: string, command: string, options: string[] = []) {
  return runSsh([
    ...sshArgs({ identityFile: key.privateKey, knownHostsFile: kh, options }),
    "-p",
    String(host.port),
    `${TEST_USER}@${host.address}`,
    command,
  ]);
}

/** Waits (≤ 5 s) until `host` has at least one per-connection sshd process. */
async function waitForSession(host: SshdHost): Promise<void> {
  for (let i = 0; i < 250 && sessionPids(host).length === 0; i++) await sleep(20);
  expect(sessionPids(host).length).toBeGreaterThan(0);
}

describe("the SSH lab with the real OpenSSH client", { timeout: 20_000 }, () => {
  it("one host: logs in as the test user with strict host-key checking", async () => {
    const host = await lab.sshd({ authorizedKeys: [key.publicKey] });
    expect(host.address).toBe("127.0.0.1");
    expect(host.port).toBeGreaterThan(0);

    const run = await sshTo(host, knownHosts([host]), "echo ok; id -un");
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`ok\n${TEST_USER}\n`);
    expect(host.logs()).toMatch(new RegExp(`Accepted publickey for ${TEST_USER} from 127\\.0\\.0\\.1`));
    expect(host.hostKeys.ed25519.fingerprintSha256).toMatch(/^SHA256:/);
    expect(host.logs()).toContain(key.fingerprintSha256);

    // Host-key checking is really on: a known_hosts entry with another key is refused.
    const wrong = join(dir, "known_hosts.wrong");
    execFileSync("sh", [
      "-c",
      'printf "%s\\n" "$1" > "$2"',
      "sh",
      `[${host.address}]:${host.port} ${key.publicKey}`,
      wrong,
    ]);
    const refused = await sshTo(host, wrong, "echo ok");
    expect(refused.code).toBe(255);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);

    // And a key that is not authorized is refused by the server.
    const stranger = lab.key("id_stranger");
    const denied = await runSsh([
      ...sshArgs({ identityFile: stranger.privateKey, knownHostsFile: knownHosts([host]) }),
      "-p",
      String(host.port),
      `${TEST_USER}@${host.address}`,
      "echo ok",
    ]);
    expect(denied.code).toBe(255);
    expect(denied.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  it("three hosts on 127.0.0.2-4, started and used in parallel", async () => {
    const started = performance.now();
    const hosts = await lab.fleet(3, { authorizedKeys: [key.publicKey] });
    const startMs = performance.now() - started;
    expect(hosts.map((h) => h.address)).toEqual(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    expect(new Set(hosts.map((h) => h.hostKeys.ed25519.publicKey)).size).toBe(3);
    expect(startMs).toBeLessThan(5000);

    const kh = knownHosts(hosts);
    const runs = await Promise.all(hosts.map((h) => sshTo(h, kh, 'echo ok; id -un; echo "$SSH_CONNECTION"')));
    for (const [i, run] of runs.entries()) {
      const host = hosts[i] as SshdHost;
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      const [ok, user, connection] = run.stdout.trim().split("\n");
      expect(ok).toBe("ok");
      expect(user).toBe(TEST_USER);
      expect(connection?.split(" ").slice(2)).toEqual([host.address, String(host.port)]);
    }
  });

  it("applies MaxSessions (and the rest of its config) as sshd reads it", async () => {
    const host = await lab.sshd({
      authorizedKeys: [key.publicKey],
      maxSessions: 3,
      extraConfig: ["ClientAliveInterval 7"],
    });
    expect(host.configText()).toMatch(/^MaxSessions 3$/m);
    const effective = execFileSync("/usr/sbin/sshd", ["-T", "-f", host.configPath], { encoding: "utf8" });
    expect(effective).toMatch(/^maxsessions 3$/m);
    expect(effective).toMatch(/^clientaliveinterval 7$/m);
    expect(effective).toMatch(/^usepam no$/m);
    expect(effective).toMatch(/^passwordauthentication no$/m);
    expect(effective).toMatch(new RegExp(`^allowusers ${TEST_USER}$`, "m"));
    expect(effective).toMatch(/^acceptenv LANG$/m);
    expect(effective).toMatch(/^acceptenv RECLAIM_\*$/m);
  });

  it("reaches a namespace-only host through a jump host; the inner host and the blackhole fail at once", async () => {
    const net = await lab.netns("sshlab");
    expect(net.jumpNs).toBe("rcl-sshlab-jump");
    expect(net.innerNs).toBe("rcl-sshlab-inner");
    const [jump, inner] = (await Promise.all([
      lab.sshd({ netns: net.jumpNs, address: net.jumpAddress, authorizedKeys: [key.publicKey] }),
      lab.sshd({ netns: net.innerNs, address: net.innerAddress, authorizedKeys: [key.publicKey] }),
    ])) as [SshdHost, SshdHost];
    expect(jump.port).toBe(22);
    expect(inner.port).toBe(22);

    const kh = knownHosts([jump, inner]);
    expect(readFileSync(kh, "utf8")).toContain(`${net.innerAddress} ssh-ed25519 `);
    // -o/-i are not passed to the ssh that -J starts for the jump host; -F is.
    const config = writeClientConfig(join(dir, "ssh_config.jump"), {
      identityFile: key.privateKey,
      knownHostsFile: kh,
      hosts: [
        { alias: "jump", hostName: net.jumpAddress, port: jump.port },
        { alias: "inner", hostName: net.innerAddress, port: inner.port },
      ],
    });

    // The client (root namespace) reaches the jump host directly...
    expect((await tcpProbe(net.jumpAddress, jump.port)).result).toBe("connected");
    // ...but not the inner host, nor anything else in 10.213.0.0/16: refused by the route, fast.
    for (const address of [net.innerAddress, net.unreachableAddress]) {
      const probe = await tcpProbe(address, 22);
      expect(probe.result).toBe("EHOSTUNREACH");
      expect(probe.ms).toBeLessThan(500);
    }
    const direct = await runSsh(["-F", config, "inner", "echo ok"]);
    expect(direct.code).toBe(255);
    expect(direct.stderr).toMatch(/No route to host/);
    expect(direct.ms).toBeLessThan(2000);

    const viaJump = await runSsh([
      "-F",
      config,
      "-J",
      `${TEST_USER}@jump`,
      `${TEST_USER}@inner`,
      'echo ok; id -un; echo "$SSH_CONNECTION"',
    ]);
    expect(viaJump.stderr).toBe("");
    expect(viaJump.code).toBe(0);
    const [ok, user, connection] = viaJump.stdout.trim().split("\n");
    expect(ok).toBe("ok");
    expect(user).toBe(TEST_USER);
    // The inner host sees the connection coming from the jump host's side of their link.
    expect(connection?.split(" ")[0]).toBe(net.jumpInnerSideAddress);
    expect(connection?.split(" ").slice(2)).toEqual([net.innerAddress, "22"]);
    expect(jump.logs()).toMatch(/Accepted publickey/);
    expect(inner.logs()).toMatch(
      new RegExp(
        `Accepted publickey for ${TEST_USER} from ${net.jumpInnerSideAddress.replaceAll(".", "\\.")}`,
      ),
    );
  });

  it("killSessions drops open connections and keeps the listener", async () => {
    const host = await lab.sshd({ authorizedKeys: [key.publicKey] });
    const kh = knownHosts([host]);
    const session = startSsh([
      ...sshArgs({ identityFile: key.privateKey, knownHostsFile: kh }),
      "-p",
      String(host.port),
      `${TEST_USER}@${host.address}`,
      "sleep 25",
    ]);
    await waitForSession(host);
    const killed = await killSessions(host);
    expect(killed.length).toBeGreaterThan(0);
    const dropped = await session.done;
    expect(dropped.code).toBe(255);
    expect(dropped.ms).toBeLessThan(10_000);
    expect(host.alive()).toBe(true);
    const again = await sshTo(host, kh, "echo ok");
    expect(again.stdout).toBe("ok\n");
  });

  it("stop() ends sshd and every session process it forked, and removes its files", async () => {
    const own = new Lab();
    try {
      const host = await own.sshd({ authorizedKeys: [key.publicKey] });
      const kh = knownHosts([host]);
      const session = startSsh([
        ...sshArgs({ identityFile: key.privateKey, knownHostsFile: kh }),
        "-p",
        String(host.port),
        `${TEST_USER}@${host.address}`,
        "sleep 25",
      ]);
      await waitForSession(host);
      // Wait (≤ 5 s) for the remote `sleep` itself to exist under the session.
      let tree: ProcInfo[] = [];
      for (let i = 0; i < 250; i++) {
        tree = descendants(host.pid);
        if (tree.some((p) => readFileSync(`/proc/${p.pid}/cmdline`, "utf8").startsWith("sleep"))) break;
        await sleep(20);
      }
      const listener = procInfo(host.pid) as ProcInfo;
      const ours = [listener, ...tree];
      expect(ours.length).toBeGreaterThanOrEqual(3);
      expect(processesMentioning(host.configPath)).toContain(host.pid);

      await host.stop();
      expect(ours.filter(isAlive).map((p) => p.pid)).toEqual([]);
      expect(processesMentioning(host.configPath)).toEqual([]);
      expect(existsSync(host.dir)).toBe(false);
      expect(host.alive()).toBe(false);
      expect((await session.done).code).toBe(255);
      await host.stop(); // idempotent
    } finally {
      await own.close();
    }
  });

  it("Lab.close() stops its hosts and deletes its namespaces", async () => {
    const own = new Lab();
    const net = await own.netns("sshlab2");
    const host = await own.sshd({
      netns: net.jumpNs,
      address: net.jumpAddress,
      authorizedKeys: [key.publicKey],
    });
    const listener = procInfo(host.pid) as ProcInfo;
    expect(execFileSync(IP, ["netns", "list"], { encoding: "utf8" })).toContain("rcl-sshlab2-jump");

    await own.close();
    await own.close(); // idempotent
    expect(isAlive(listener)).toBe(false);
    const namespaces = execFileSync(IP, ["netns", "list"], { encoding: "utf8" });
    expect(namespaces).not.toContain("rcl-sshlab2-");
    expect(execFileSync(IP, ["-o", "link", "show"], { encoding: "utf8" })).not.toContain("rcl-sshlab2-");
  });
});
