/**
 * reclaim over real SSH: the built CLI against real sshd hosts (the lab) logging in as
 * `reclaim-test` with generated keys and known_hosts, rewriting real images with the real qemu-img;
 * and the SSH transport itself against a real sshd (session limits, timeouts, dropped connections).
 * Every SSH file reclaim reads is named on its command line or lives in a temporary HOME, so the
 * runner's own ~/.ssh is never used.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionLostError, TransportError } from "../../src/errors.js";
import { connectChain } from "../../src/transport/ssh/connect.js";
import { resolveSshSettings } from "../../src/transport/ssh/settings.js";
import { createSshTransport } from "../../src/transport/ssh/ssh-transport.js";
import type { Transport } from "../../src/transport/transport.js";
import { type CliRun, ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { allocated, bloatedImage, copySparse, identical } from "../helpers/images.js";
import { descendants, sleep } from "../lab/proc.js";
import {
  ensureTestUser,
  giveToTestUser,
  type KeyPair,
  killSessions,
  Lab,
  type NetnsLab,
  type SshdHost,
  sudoAvailable,
  TEST_USER,
  type TestUser,
  writeKnownHosts,
} from "../lab/sshd.js";

const lab = new Lab();
afterAll(() => lab.close(), 30_000);

let user: TestUser;
let key: KeyPair;
/** Holds the ssh config, known_hosts files, inventories, playbooks and pristine copies. */
let work: string;
/** HOME for the CLI: an empty directory, so no ~/.ssh of the runner can be read. */
let home: string;
let emptySshConfig: string;
/** 127.0.0.2, .3, .4 */
let fleet: SshdHost[];
/** 127.0.0.5 with MaxSessions 5, for the transport's own tests. */
let limited: SshdHost;
let net: NetnsLab;
let jump: SshdHost;
let inner: SshdHost;

beforeAll(async () => {
  user = ensureTestUser();
  work = lab.tempDir("reclaim-ssh-fleet-");
  home = lab.tempDir("reclaim-ssh-fleet-home-");
  emptySshConfig = join(work, "ssh_config.empty");
  writeFileSync(emptySshConfig, "");
  key = lab.key("id_fleet");
  // The sshds (loopback fleet, limited host, netns pair) start at once; the build (synchronous)
  // runs while they do.
  const netns = lab.netns(`sf${process.pid.toString(36)}`).then(async (n) => {
    net = n;
    [jump, inner] = (await Promise.all([
      lab.sshd({ netns: n.jumpNs, address: n.jumpAddress, authorizedKeys: [key.publicKey] }),
      lab.sshd({ netns: n.innerNs, address: n.innerAddress, authorizedKeys: [key.publicKey] }),
    ])) as [SshdHost, SshdHost];
  });
  [fleet, limited] = await Promise.all([
    lab.fleet(3, { authorizedKeys: [key.publicKey] }),
    lab.sshd({ address: "127.0.0.5", maxSessions: 5, authorizedKeys: [key.publicKey] }),
    netns,
    Promise.resolve().then(() => ensureBuilt()),
  ]);
}, 120_000);

// ---------------------------------------------------------------------------------------------
// helpers

let files = 0;
function workFile(name: string): string {
  return join(work, `${++files}-${name}`);
}

interface FleetHost {
  name: string;
  vars: Record<string, string | number>;
}

function sshVars(host: SshdHost, identityFile = key.privateKey): Record<string, string | number> {
  return {
    ansible_host: host.address,
    ansible_port: host.port,
    ansible_user: TEST_USER,
    ansible_ssh_private_key_file: identityFile,
  };
}

function writeInventory(hosts: readonly FleetHost[]): string {
  const lines = ["all:", "  children:", "    hypervisors:", "      hosts:"];
  for (const h of hosts) {
    const vars = Object.entries(h.vars);
    lines.push(`        ${h.name}:${vars.length ? "" : " {}"}`);
    for (const [k, v] of vars) lines.push(`          ${k}: ${JSON.stringify(v)}`);
  }
  const file = workFile("inventory.yml");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

interface Guest {
  name: string;
  host: string;
  disk: string;
}

function writePlaybook(guests: readonly Guest[], become = false): string {
  const lines = [
    "- name: fleet play",
    "  hosts: hypervisors",
    `  become: ${become}`,
    "  policy:",
    "    min_reclaimable: 16MiB",
    "    min_ratio: 10%",
    "    zero: none",
    "  guests:",
  ];
  for (const g of guests) {
    lines.push(`    - name: ${g.name}`, `      host: ${g.host}`, `      disks: [${JSON.stringify(g.disk)}]`);
  }
  const file = workFile("playbook.yml");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

interface Disk {
  dir: string;
  image: string;
  pristine: string;
}

/** A bloated image (≈40 MiB allocated, 32 MiB of it free inside) in its own directory, with a pristine copy. */
function makeDisk(name: string, owner: "test-user" | "root" = "test-user"): Disk {
  const dir = lab.tempDir(`reclaim-ssh-fleet-${name}-`);
  const image = join(dir, `${name}.qcow2`);
  bloatedImage(image, { virtualMiB: 128, writtenMiB: 40, freedMiB: 32 });
  const pristine = workFile(`${name}.pristine.qcow2`);
  copySparse(image, pristine);
  if (owner === "test-user") {
    giveToTestUser(dir);
    giveToTestUser(image);
  } else {
    // Root's, and unreadable for the test user, who may still look into the directory.
    chmodSync(dir, 0o755);
    chmodSync(image, 0o600);
  }
  return { dir, image, pristine };
}

function identity(path: string): [number, number, number] {
  const st = statSync(path);
  return [st.ino, st.mtimeMs, st.size];
}

function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes(".reclaim-"));
}

/** `reclaim ARGS` with a temporary HOME and no ssh-agent; `--ssh-config` is added unless given. */
function reclaim(args: readonly string[], sshConfig = emptySshConfig): Promise<CliRun> {
  return runCliProcess([...args, "--ssh-config", sshConfig], { HOME: home, SSH_AUTH_SOCK: "" });
}

function recapLine(run: CliRun, host: string): string {
  return run.stdout.split("\n").find((l) => new RegExp(`^${host}\\s+: ok=`).test(l)) ?? "";
}

/** What the run printed, for a failed assertion's message. */
function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

// ---------------------------------------------------------------------------------------------

describe("reclaim apply over SSH on a fleet of real sshd hosts", { timeout: 40_000 }, () => {
  it("shrinks one image on each of three hosts in parallel, and a second run changes nothing", async () => {
    const names = ["kvm1", "kvm2", "kvm3"];
    const disks = names.map((n) => makeDisk(n));
    const before = disks.map((d) => allocated(d.image));
    const inventory = writeInventory(names.map((name, i) => ({ name, vars: sshVars(fleet[i] as SshdHost) })));
    const playbook = writePlaybook(
      names.map((name, i) => ({ name: `vm-${name}`, host: name, disk: (disks[i] as Disk).image })),
    );
    const knownHosts = writeKnownHosts(workFile("known_hosts"), fleet);
    const args = ["apply", "--yes", "-f", "3", "-i", inventory, playbook, "--known-hosts", knownHosts];

    const run = await reclaim(args);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stderr).toBe("");
    for (const [i, name] of names.entries()) {
      const disk = disks[i] as Disk;
      expect(recapLine(run, name), shown(run)).toMatch(/ok=0 changed=1 skipped=0 failed=0 unreachable=0/);
      expect(allocated(disk.image)).toBeLessThan((before[i] as number) / 2);
      expect(identical(disk.pristine, disk.image)).toBe(true);
      const st = statSync(disk.image);
      expect([st.uid, st.gid]).toEqual([user.uid, user.gid]);
      expect(leftovers(disk.dir)).toEqual([]);
      // reclaim really went over SSH to that host, as the test user with the generated key.
      expect((fleet[i] as SshdHost).logs()).toContain(`Accepted publickey for ${TEST_USER}`);
    }

    const after = disks.map((d) => identity(d.image));
    const second = await reclaim(args);
    expect(second.code, shown(second)).toBe(0);
    expect(second.stdout).toMatch(/No changes/);
    for (const name of names) expect(recapLine(second, name)).toMatch(/ok=1 changed=0/);
    expect(disks.map((d) => identity(d.image))).toEqual(after);
  });

  it("refuses a host whose key is not in known_hosts, and records it with --accept-new-host-keys", async () => {
    const host = fleet[0] as SshdHost;
    const disk = makeDisk("unknown");
    const inventory = writeInventory([{ name: "kvm1", vars: sshVars(host) }]);
    const playbook = writePlaybook([{ name: "vm", host: "kvm1", disk: disk.image }]);
    // known_hosts knows the two other hosts only.
    const knownHosts = writeKnownHosts(workFile("known_hosts"), fleet.slice(1));
    const untouched = identity(disk.image);
    const name = `[${host.address}]:${host.port}`;

    const refused = await reclaim(["apply", "--yes", "-i", inventory, playbook, "--known-hosts", knownHosts]);
    expect(refused.code, shown(refused)).toBe(3);
    expect(refused.stdout).toContain(`kvm1  UNREACHABLE: host key for ${name} is not known`);
    const prints = [host.hostKeys.ed25519.fingerprintSha256, host.hostKeys.rsa.fingerprintSha256];
    const shownPrint = /SHA256:[A-Za-z0-9+/]+/.exec(recapLine(refused, "kvm1"))?.[0];
    expect(prints, shown(refused)).toContain(shownPrint);
    expect(recapLine(refused, "kvm1")).toMatch(/unreachable=1/);
    expect(identity(disk.image)).toEqual(untouched);
    expect(() => execFileSync("ssh-keygen", ["-F", name, "-f", knownHosts])).toThrow();

    const accepted = await reclaim([
      "apply",
      "--yes",
      "-i",
      inventory,
      playbook,
      "--known-hosts",
      knownHosts,
      "--accept-new-host-keys",
    ]);
    expect(accepted.code, shown(accepted)).toBe(0);
    expect(recapLine(accepted, "kvm1")).toMatch(/changed=1/);
    expect(identical(disk.pristine, disk.image)).toBe(true);
    const found = execFileSync("ssh-keygen", ["-F", name, "-f", knownHosts], { encoding: "utf8" });
    expect(found).toContain(`${name} ssh-`);
    // The recorded key is the host's own, and it was added beside the two that were there.
    const recorded = found.split("\n").find((l) => l.startsWith(name)) ?? "";
    expect([host.hostKeys.ed25519.publicKey, host.hostKeys.rsa.publicKey]).toContain(
      recorded.split(" ").slice(1, 3).join(" "),
    );
    expect(readFileSync(knownHosts, "utf8").trim().split("\n")).toHaveLength(5);
  });

  it("refuses a host whose key has changed, even with --accept-new-host-keys", async () => {
    const host = fleet[1] as SshdHost;
    const other = fleet[2] as SshdHost;
    const disk = makeDisk("changed");
    const inventory = writeInventory([{ name: "kvm2", vars: sshVars(host) }]);
    const playbook = writePlaybook([{ name: "vm", host: "kvm2", disk: disk.image }]);
    const name = `[${host.address}]:${host.port}`;
    // The right name with another host's keys: what a reinstalled (or impersonated) host looks like.
    const knownHosts = workFile("known_hosts");
    writeFileSync(knownHosts, other.knownHostsLines(name));
    const untouched = identity(disk.image);

    for (const extra of [[], ["--accept-new-host-keys"]]) {
      const run = await reclaim([
        "apply",
        "--yes",
        "-i",
        inventory,
        playbook,
        "--known-hosts",
        knownHosts,
        ...extra,
      ]);
      expect(run.code, shown(run)).toBe(3);
      expect(run.stdout).toContain(`kvm2  UNREACHABLE: host key for ${name} has CHANGED`);
      expect(run.stdout).toContain(host.hostKeys.ed25519.fingerprintSha256);
      expect(recapLine(run, "kvm2")).toMatch(/unreachable=1/);
    }
    expect(identity(disk.image)).toEqual(untouched);
    expect(readFileSync(knownHosts, "utf8")).toBe(other.knownHostsLines(name));
  });

  it("reports a host that refuses the client key unreachable and still does the other two", async () => {
    const names = ["kvm1", "kvm2", "kvm3"];
    const disks = names.map((n) => makeDisk(`auth-${n}`));
    const stranger = lab.key("id_stranger");
    const inventory = writeInventory(
      names.map((name, i) => ({
        name,
        vars: sshVars(fleet[i] as SshdHost, i === 1 ? stranger.privateKey : key.privateKey),
      })),
    );
    const playbook = writePlaybook(
      names.map((name, i) => ({ name: `vm-${name}`, host: name, disk: (disks[i] as Disk).image })),
    );
    const knownHosts = writeKnownHosts(workFile("known_hosts"), fleet);
    const untouched = identity((disks[1] as Disk).image);

    const run = await reclaim(["apply", "--yes", "-i", inventory, playbook, "--known-hosts", knownHosts]);
    expect(run.code, shown(run)).toBe(3);
    expect(run.stdout).toMatch(
      new RegExp(
        `kvm2  UNREACHABLE: authentication to ${TEST_USER}@127\\.0\\.0\\.3:${fleet[1]?.port} failed`,
      ),
    );
    expect(recapLine(run, "kvm2")).toMatch(/changed=0 .*unreachable=1/);
    expect(identity((disks[1] as Disk).image)).toEqual(untouched);
    for (const i of [0, 2]) {
      const disk = disks[i] as Disk;
      expect(recapLine(run, names[i] as string), shown(run)).toMatch(
        /changed=1 skipped=0 failed=0 unreachable=0/,
      );
      expect(identical(disk.pristine, disk.image)).toBe(true);
    }
  });

  it("reaches a host behind a jump host named in the ssh config, and plans and applies there", async () => {
    const disk = makeDisk("inner");
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [jump, inner]);
    const sshConfig = workFile("ssh_config");
    writeFileSync(
      sshConfig,
      [
        "Host inner",
        `  HostName ${net.innerAddress}`,
        "  ProxyJump jumpalias",
        `  User ${TEST_USER}`,
        `  Port ${inner.port}`,
        `  IdentityFile ${key.privateKey}`,
        "Host jumpalias",
        `  HostName ${net.jumpAddress}`,
        `  User ${TEST_USER}`,
        `  Port ${jump.port}`,
        `  IdentityFile ${key.privateKey}`,
        "",
      ].join("\n"),
    );
    const inventory = writeInventory([{ name: "inner", vars: {} }]);
    const playbook = writePlaybook([{ name: "vm", host: "inner", disk: disk.image }]);
    const common = ["-i", inventory, playbook, "--known-hosts", knownHosts];

    const plan = await reclaim(["plan", "--detailed-exitcode", ...common], sshConfig);
    expect(plan.code, shown(plan)).toBe(2);
    expect(plan.stdout).toMatch(/rewrite: would give back ~/);

    const run = await reclaim(["apply", "--yes", ...common], sshConfig);
    expect(run.code, shown(run)).toBe(0);
    expect(recapLine(run, "inner")).toMatch(/changed=1/);
    expect(identical(disk.pristine, disk.image)).toBe(true);
    // The inner host saw the connection come from the jump host's side of their link.
    const from = net.jumpInnerSideAddress.replaceAll(".", "\\.");
    expect(inner.logs()).toMatch(new RegExp(`Accepted publickey for ${TEST_USER} from ${from}`));
    expect(jump.logs()).toMatch(/Accepted publickey/);
  });

  it("rewrites a root-owned image through sudo with become, and cannot touch it without", async () => {
    if (!sudoAvailable || !user.sudo) expect.fail("sudo is not installed: the become test cannot run");
    const host = fleet[2] as SshdHost;
    const disk = makeDisk("become", "root");
    const inventory = writeInventory([{ name: "kvm3", vars: sshVars(host) }]);
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);
    const guests = [{ name: "vm", host: "kvm3", disk: disk.image }];
    const untouched = identity(disk.image);
    const before = allocated(disk.image);

    // Without become the test user cannot even read it: the disk is skipped, saying why.
    const plain = await reclaim([
      "apply",
      "--yes",
      "-i",
      inventory,
      writePlaybook(guests),
      "--known-hosts",
      knownHosts,
    ]);
    expect(plain.code, shown(plain)).toBe(0);
    expect(plain.stdout).toContain(
      `skipped kvm3 vm ${disk.image}: cannot read the image: qemu-img exited with 1`,
    );
    expect(plain.stdout).toMatch(/Permission denied/);
    expect(recapLine(plain, "kvm3")).toMatch(/changed=0 skipped=1 failed=0 unreachable=0/);
    expect(identity(disk.image)).toEqual(untouched);
    expect(identical(disk.pristine, disk.image)).toBe(true);
    expect(leftovers(disk.dir)).toEqual([]);

    const become = await reclaim([
      "apply",
      "--yes",
      "-i",
      inventory,
      writePlaybook(guests, true),
      "--known-hosts",
      knownHosts,
    ]);
    expect(become.code, shown(become)).toBe(0);
    expect(recapLine(become, "kvm3")).toMatch(/changed=1/);
    expect(allocated(disk.image)).toBeLessThan(before / 2);
    expect(identical(disk.pristine, disk.image)).toBe(true);
    const st = statSync(disk.image);
    expect([st.uid, st.gid, (st.mode & 0o777).toString(8)]).toEqual([0, 0, "600"]);
    expect(leftovers(disk.dir)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("the SSH transport against a real sshd", { timeout: 30_000 }, () => {
  const open: Transport[] = [];
  afterAll(() => Promise.allSettled(open.map((t) => t.close())));

  async function connect(host: SshdHost): Promise<Transport> {
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);
    const settings = resolveSshSettings(
      { alias: "t", address: host.address, port: host.port, user: TEST_USER, privateKeyFile: key.privateKey },
      undefined,
      { knownHostsFile: knownHosts },
    );
    const transport = createSshTransport("t", await connectChain(settings), { maxChannels: 8 });
    open.push(transport);
    return transport;
  }

  it("runs 30 commands issued at once on a host that allows 5 sessions, each with its own output", async () => {
    const transport = await connect(limited);
    const logFrom = limited.logs().length;
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, n) => transport.run({ argv: ["sh", "-c", `sleep 0.2; echo ${n}`] })),
    );
    const ms = performance.now() - started;
    for (const [n, r] of results.entries()) {
      expect([r.exitCode, r.stdout, r.stderr, r.timedOut]).toEqual([0, `${n}\n`, "", false]);
    }
    // Six rounds of five at the least; with a working queue, nowhere near 30 × 0.2 s in a row.
    expect(ms).toBeGreaterThan(6 * 200);
    expect(ms).toBeLessThan(6000);
    // sshd did refuse channels beyond its limit: the retry was exercised.
    // sshd did refuse channels beyond its limit, so the retry was exercised; each command ran once.
    const log = limited.logs().slice(logFrom);
    expect(log).toMatch(/no more sessions/);
    expect(log.match(/Starting session: command for /g)).toHaveLength(30);
    await transport.close();
  });

  it("stops a command that outlives its timeout on the remote side too", async () => {
    const transport = await connect(limited);
    const started = performance.now();
    // `sleep 30`, told apart from any other test run's by a fraction of a second.
    const argv = ["sleep", `30.${unique}`];
    const r = await transport.run({ argv, timeoutMs: 1500 });
    const ms = performance.now() - started;
    expect(r.timedOut).toBe(true);
    expect(ms).toBeLessThan(5000);
    expect(r.exitCode).toBe(124);
    // No `sleep 30` of the test user is left anywhere on the machine.
    await waitFor(() => sleepersOf(user.uid, argv).length === 0);
    await transport.close();
  });

  it("stops the remote command when the caller aborts it", async () => {
    const transport = await connect(limited);
    const abort = new AbortController();
    const argv = ["sleep", `31.${unique}`];
    const running = transport.run({ argv, signal: abort.signal });
    await waitFor(() => sleepersOf(user.uid, argv).length > 0);
    const aborted = performance.now();
    abort.abort();
    const r = await running;
    expect(performance.now() - aborted).toBeLessThan(3000);
    expect([r.exitCode, r.signal]).toEqual([null, "SIGTERM"]);
    await waitFor(() => sleepersOf(user.uid, argv).length === 0);
    await transport.close();
  });

  it("rejects a command whose connection drops, and every later command at once", async () => {
    const transport = await connect(limited);
    const pending = transport.run({ argv: ["sleep", "20"] });
    const outcome = pending.then(
      () => "resolved",
      (e: Error) => e,
    );
    await waitFor(() => descendants(limited.pid).some((p) => cmdline(p.pid) === "sleep\u000020\u0000"));
    const dropped = performance.now();
    await killSessions(limited);
    const error = await outcome;
    expect(performance.now() - dropped).toBeLessThan(5000);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).message).toMatch(/connection to t lost|without an exit status/);

    const later = performance.now();
    // Refused before it started: the one kind of failure a reconnecting wrapper may send again.
    await expect(transport.run({ argv: ["true"] })).rejects.toMatchObject({
      constructor: ConnectionLostError,
      message: "connection to t lost",
      notStarted: true,
    });
    expect(performance.now() - later).toBeLessThan(200);
  });
});

/** Digits that make this test process's remote commands its own. */
const unique = String(process.pid).padStart(7, "0");

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1");
  } catch {
    return "";
  }
}

/** Live processes of `uid` whose argv is exactly `argv`. */
function sleepersOf(uid: number, argv: readonly string[]): number[] {
  const want = `${argv.join("\u0000")}\u0000`;
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, "utf8");
      const ruid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      if (ruid === uid && !/^State:\s+Z/m.test(status) && cmdline(Number(name)) === want)
        out.push(Number(name));
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

/** Polls `condition` every 20 ms; fails the test after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}
