/**
 * A real multi-host SSH lab for integration tests: OpenSSH servers on loopback addresses
 * (127.0.0.2 …) or inside network namespaces, each with its own host keys, config and logs,
 * logging in the dedicated user `reclaim-test` (root's shell start-up is slow on this machine).
 *
 * Everything started here is tracked: `stop()` on each host, `Lab.close()` for all a test made,
 * and a process-exit safety net that SIGKILLs whatever is still running.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { registerCleanup } from "./cleanup.js";
import { createNetnsLab, IP, type NetnsLab } from "./netns.js";
import { descendants, type ProcInfo, procInfo, signal, sleep, terminate, waitGone } from "./proc.js";

export { type Reapable, registerCleanup } from "./cleanup.js";
export { createNetnsLab, type NetnsLab, UNREACHABLE_ADDRESS } from "./netns.js";

const execFileAsync = promisify(execFile);

export const SSHD = "/usr/sbin/sshd";
export const TEST_USER = "reclaim-test";
const SUDOERS_FILE = "/etc/sudoers.d/reclaim-test";
const SUDO = ["/usr/bin/sudo", "/bin/sudo"].find((p) => existsSync(p));
/** Whether `sudo` is installed here (become tests need it; `.ci/setup` decides whether to install it). */
export const sudoAvailable: boolean = SUDO !== undefined;

// ---------------------------------------------------------------------------------------------
// The test user

export interface TestUser {
  user: string;
  uid: number;
  gid: number;
  home: string;
  /** True when passwordless `sudo -n` works for the user (sudo installed and sudoers written). */
  sudo: boolean;
}

let testUser: TestUser | undefined;

function passwdEntry(user: string): TestUser | undefined {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === user) {
      return { user, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "", sudo: false };
    }
  }
  return undefined;
}

function shadowPassword(user: string): string | undefined {
  for (const line of readFileSync("/etc/shadow", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === user) return f[1];
  }
  return undefined;
}

/** Runs a shadow-utils command, retrying while another worker holds /etc/passwd's lock (bounded). */
function shadowUtil(file: string, args: readonly string[], done: () => boolean): void {
  let last: unknown;
  for (let i = 0; i < 50; i++) {
    if (done()) return;
    try {
      execFileSync(file, args, { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });
      return;
    } catch (e) {
      last = e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
  if (!done()) throw last;
}

/**
 * Creates (idempotently) the system user `reclaim-test`: shell /bin/sh, password `*` (locked for
 * passwords but allowed to log in with keys under `UsePAM no`, unlike `!`), its own home, and
 * when sudo is installed a `/etc/sudoers.d/reclaim-test` granting passwordless `sudo -n`.
 * Tests chown the images they make to `uid`/`gid` so the user can run qemu-img on them.
 */
export function ensureTestUser(): TestUser {
  if (testUser) return testUser;
  const home = `/home/${TEST_USER}`;
  shadowUtil(
    "useradd",
    ["--system", "--user-group", "--create-home", "--home-dir", home, "--shell", "/bin/sh", TEST_USER],
    () => passwdEntry(TEST_USER) !== undefined,
  );
  const entry = passwdEntry(TEST_USER);
  if (!entry) throw new Error(`could not create user ${TEST_USER}`);
  shadowUtil("usermod", ["-p", "*", TEST_USER], () => shadowPassword(TEST_USER) === "*");
  shadowUtil(
    "usermod",
    ["-s", "/bin/sh", TEST_USER],
    () =>
      readFileSync("/etc/passwd", "utf8").includes(`${TEST_USER}:`) && passwdShell(TEST_USER) === "/bin/sh",
  );
  if (!existsSync(entry.home)) {
    mkdirSync(entry.home, { recursive: true, mode: 0o750 });
    chownSync(entry.home, entry.uid, entry.gid);
  }
  let sudo = false;
  if (SUDO) {
    const rule = `${TEST_USER} ALL=(ALL) NOPASSWD: ALL\n`;
    const current = existsSync(SUDOERS_FILE) ? readFileSync(SUDOERS_FILE, "utf8") : undefined;
    if (current !== rule) {
      const tmp = `${SUDOERS_FILE}.tmp-${process.pid}`;
      writeFileSync(tmp, rule, { mode: 0o440 });
      chmodSync(tmp, 0o440);
      try {
        execFileSync("visudo", ["-cqf", tmp], { stdio: "ignore", timeout: 10_000 });
        renameSync(tmp, SUDOERS_FILE);
      } finally {
        rmSync(tmp, { force: true });
      }
    }
    sudo = true;
  }
  testUser = { ...entry, sudo };
  return testUser;
}

function passwdShell(user: string): string | undefined {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === user) return f[6];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Keys

export interface KeyPair {
  /** Path of the private key (what `ssh -i` and ssh2's `privateKey` take). */
  privateKey: string;
  publicKeyPath: string;
  /** The public key line, `ssh-ed25519 AAAA… comment`, for authorized_keys. */
  publicKey: string;
  fingerprintSha256: string;
  passphrase: string;
}

function fingerprint(pubPath: string): string {
  const out = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", pubPath], { encoding: "utf8" });
  const fp = /SHA256:\S+/.exec(out)?.[0];
  if (!fp) throw new Error(`no fingerprint in: ${out}`);
  return fp;
}

/** An ed25519 key pair made with ssh-keygen in `dir` (`-N passphrase`, empty by default). */
export function generateKey(dir: string, name: string, passphrase = ""): KeyPair {
  const privateKey = join(dir, name);
  rmSync(privateKey, { force: true });
  rmSync(`${privateKey}.pub`, { force: true });
  execFileSync(
    "ssh-keygen",
    ["-q", "-t", "ed25519", "-N", passphrase, "-C", `${name}@reclaim-lab`, "-f", privateKey],
    {
      stdio: "ignore",
      timeout: 10_000,
    },
  );
  const publicKeyPath = `${privateKey}.pub`;
  return {
    privateKey,
    publicKeyPath,
    publicKey: readFileSync(publicKeyPath, "utf8").trim(),
    fingerprintSha256: fingerprint(publicKeyPath),
    passphrase,
  };
}

export interface HostKey {
  /** `ssh-ed25519 AAAA…` / `ssh-rsa AAAA…` (no comment): the known_hosts key field. */
  publicKey: string;
  fingerprintSha256: string;
  privateKeyPath: string;
}

async function hostKey(dir: string, type: "ed25519" | "rsa"): Promise<HostKey> {
  const privateKeyPath = join(dir, `ssh_host_${type}_key`);
  await execFileAsync("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", "", "-f", privateKeyPath], {
    timeout: 20_000,
  });
  const pub = `${privateKeyPath}.pub`;
  const [kind, blob] = readFileSync(pub, "utf8").trim().split(/\s+/);
  return { publicKey: `${kind} ${blob}`, fingerprintSha256: fingerprint(pub), privateKeyPath };
}

// ---------------------------------------------------------------------------------------------
// sshd

export interface SshdOptions {
  /** Listen address: 127.0.0.1 by default; 127.0.0.2+ for more hosts; a namespace address with `netns`. */
  address?: string;
  /** 0/undefined: a free port on that address (22 inside a network namespace). */
  port?: number;
  /** sshd's MaxSessions (channels per connection); OpenSSH's default is 10. */
  maxSessions?: number;
  /** authorized_keys lines for `reclaim-test`. */
  authorizedKeys: readonly string[];
  /** Run sshd inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** More sshd_config lines, appended last. */
  extraConfig?: readonly string[];
  /** How long to wait for "Server listening" (default 10 s). */
  readyTimeoutMs?: number;
}

export interface SshdHost {
  address: string;
  port: number;
  netns: string | undefined;
  /** sshd's PID (the listener; per-connection sshd processes are its children). */
  pid: number;
  /** The temp dir holding config, host keys, authorized_keys and pid file; removed by stop(). */
  dir: string;
  configPath: string;
  authorizedKeysPath: string;
  hostKeys: { ed25519: HostKey; rsa: HostKey };
  /**
   * A known_hosts line for this host: `[address]:port key` (bare `address` on port 22), or
   * `hostAlias key` when given (for `HostKeyAlias` / ssh2 verifiers keyed by name).
   */
  knownHostsLine(hostAlias?: string, type?: "ed25519" | "rsa"): string;
  /** Both keys' lines, newline-terminated. */
  knownHostsLines(hostAlias?: string): string;
  /** What sshd logged so far (LogLevel VERBOSE, on stderr via -e). */
  logs(): string;
  configText(): string;
  alive(): boolean;
  /** SIGTERM (then SIGKILL) to sshd and every session process it forked; removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

let runSshdChecked = false;
function ensureRunSshd(): void {
  if (runSshdChecked) return;
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  chmodSync("/run/sshd", 0o755);
  runSshdChecked = true;
}

/** A port that was free on `address` a moment ago (sshd start retries if it was taken meanwhile). */
export function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, address, () => {
      const a = server.address();
      const port = typeof a === "object" && a ? a.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function sshdConfig(o: SshdOptions, dir: string, address: string, port: number, keys: HostKey[]): string {
  return [
    `ListenAddress ${address}`,
    `Port ${port}`,
    ...keys.map((k) => `HostKey ${k.privateKeyPath}`),
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "UsePAM no",
    "StrictModes no",
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
    `AllowUsers ${TEST_USER}`,
    `MaxSessions ${o.maxSessions ?? 10}`,
    "MaxStartups 100:30:200",
    `PidFile ${join(dir, "sshd.pid")}`,
    "LogLevel VERBOSE",
    "AcceptEnv LANG LC_* RECLAIM_*",
    "UseDNS no",
    "PrintMotd no",
    "PrintLastLog no",
    "Subsystem sftp internal-sftp",
    ...(o.extraConfig ?? []),
    "",
  ].join("\n");
}

const LOG_LIMIT = 1 << 20;

interface Launch {
  child: ChildProcess;
  proc: ProcInfo;
  log: () => string;
  exited: Promise<void>;
  unregister: () => void;
}

async function launch(
  o: SshdOptions,
  dir: string,
  configPath: string,
  address: string,
  port: number,
): Promise<Launch | string> {
  const args = ["-D", "-e", "-f", configPath];
  const child = o.netns
    ? spawn(IP, ["netns", "exec", o.netns, SSHD, ...args], {
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" },
      })
    : spawn(SSHD, args, {
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" },
      });
  let log = "";
  const append = (c: string) => {
    log += c;
    if (log.length > LOG_LIMIT) log = log.slice(-LOG_LIMIT);
  };
  child.stdout?.setEncoding("utf8").on("data", append);
  child.stderr?.setEncoding("utf8").on("data", append);
  let exitedFlag = false;
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exitedFlag = true;
      resolve();
    }),
  );
  child.once("error", (e) => append(`spawn error: ${e.message}\n`));
  const spawned = child.pid ? procInfo(child.pid) : undefined;
  const unregister = spawned
    ? registerCleanup({ kind: "process", pid: spawned.pid, start: spawned.start, dir })
    : () => {};

  const ready = `Server listening on ${address} port ${port}.`;
  const deadline = Date.now() + (o.readyTimeoutMs ?? 10_000);
  for (let i = 0; i < 2000 && !log.includes(ready); i++) {
    if (exitedFlag || Date.now() > deadline) break;
    await sleep(10);
  }
  const pid = child.pid;
  const proc = pid ? procInfo(pid) : undefined;
  if (log.includes(ready) && proc && !exitedFlag) {
    // Do not keep the test process alive for sshd; stop()/close(), or the reaper, end it.
    child.unref();
    for (const s of [child.stdout, child.stderr]) (s as Socket | null)?.unref();
    return { child, proc, log: () => log, exited, unregister };
  }
  if (proc && !exitedFlag) {
    signal(proc, "SIGKILL");
    await Promise.race([exited, sleep(2000)]);
  }
  unregister();
  return log || `sshd did not start (exit code ${child.exitCode})`;
}

/** Starts one sshd (see SshdOptions) and waits, bounded, until it listens. */
export async function startSshd(o: SshdOptions): Promise<SshdHost> {
  ensureTestUser();
  ensureRunSshd();
  const address = o.address ?? "127.0.0.1";
  const dir = mkdtempSync(join(tmpdir(), "reclaim-sshd-"));
  // sshd reads AuthorizedKeysFile as the user: the dir must be traversable, the file readable.
  chmodSync(dir, 0o711);
  let started: Launch | undefined;
  let port = 0;
  let configPath = "";
  try {
    const [ed25519, rsa] = await Promise.all([hostKey(dir, "ed25519"), hostKey(dir, "rsa")]);
    const authorizedKeysPath = join(dir, "authorized_keys");
    writeFileSync(authorizedKeysPath, o.authorizedKeys.map((k) => `${k.trim()}\n`).join(""));
    chmodSync(authorizedKeysPath, 0o644);
    configPath = join(dir, "sshd_config");

    let failure = "";
    for (let attempt = 0; attempt < 5 && !started; attempt++) {
      if (o.port) port = o.port;
      else if (o.netns) port = attempt === 0 ? 22 : 20_000 + Math.floor(Math.random() * 40_000);
      else port = await freePort(address);
      writeFileSync(configPath, sshdConfig(o, dir, address, port, [ed25519, rsa]));
      const r = await launch(o, dir, configPath, address, port);
      if (typeof r !== "string") started = r;
      else {
        failure = r;
        if (o.port || !/Address already in use|Cannot bind any address/.test(r)) break;
      }
    }
    if (!started)
      throw new Error(`sshd on ${address}${o.netns ? ` in ${o.netns}` : ""} failed to start:\n${failure}`);
    const s = started;
    let stopping: Promise<void> | undefined;

    const knownHostsLine = (alias?: string, type: "ed25519" | "rsa" = "ed25519") => {
      const pattern = alias ?? (port === 22 ? address : `[${address}]:${port}`);
      return `${pattern} ${(type === "ed25519" ? ed25519 : rsa).publicKey}`;
    };
    const host: SshdHost = {
      address,
      port,
      netns: o.netns,
      pid: s.proc.pid,
      dir,
      configPath,
      authorizedKeysPath,
      hostKeys: { ed25519, rsa },
      knownHostsLine,
      knownHostsLines: (alias?: string) =>
        `${knownHostsLine(alias, "ed25519")}\n${knownHostsLine(alias, "rsa")}\n`,
      logs: s.log,
      configText: () => readFileSync(configPath, "utf8"),
      alive: () => procInfo(s.proc.pid)?.start === s.proc.start && procInfo(s.proc.pid)?.state !== "Z",
      stop() {
        stopping ??= (async () => {
          // Freeze the listener so it accepts and forks nothing while its tree is collected
          // (per-connection children call setsid(), so a process-group kill would miss them),
          // then SIGKILL it: a stopped process would only act on SIGTERM after SIGCONT, when it
          // could accept again. Sessions get SIGTERM (+SIGCONT if frozen), SIGKILL after 2 s.
          signal(s.proc, "SIGSTOP");
          const sessions = descendants(s.proc.pid);
          signal(s.proc, "SIGKILL");
          try {
            process.kill(-s.proc.pid, "SIGKILL");
          } catch {
            // The group is already empty.
          }
          for (const p of sessions) signal(p, "SIGTERM");
          for (const p of sessions) signal(p, "SIGCONT");
          const survivors = await waitGone(sessions, 2000);
          const left = await terminate(survivors, 0);
          await Promise.race([s.exited, sleep(3000)]);
          rmSync(dir, { recursive: true, force: true });
          s.unregister();
          if (left.length > 0)
            throw new Error(`sshd ${address}:${port}: processes survived stop(): ${left.map((p) => p.pid)}`);
        })();
        return stopping;
      },
    };
    return host;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Kills the per-connection sshd processes of `host` (and what they run), leaving the listener up:
 * every open connection drops as if the server side died. Returns the PIDs signalled.
 */
export async function killSessions(host: SshdHost, sig: NodeJS.Signals = "SIGKILL"): Promise<number[]> {
  const sessions = descendants(host.pid);
  for (const p of sessions) signal(p, sig);
  if (sig === "SIGKILL" || sig === "SIGTERM") await waitGone(sessions, 3000);
  return sessions.map((p) => p.pid);
}

/** The current per-connection sshd processes of `host` (direct children of the listener). */
export function sessionPids(host: SshdHost): number[] {
  return descendants(host.pid)
    .filter((p) => p.ppid === host.pid)
    .map((p) => p.pid);
}

/** `n` hosts on 127.0.0.(first) … 127.0.0.(first+n-1), first = 2 by default, started in parallel. */
export async function startFleet(
  n: number,
  options: Omit<SshdOptions, "address" | "netns"> & { firstHost?: number },
): Promise<SshdHost[]> {
  const first = options.firstHost ?? 2;
  if (first < 1 || first + n - 1 > 254) throw new Error(`fleet of ${n} from 127.0.0.${first} does not fit`);
  const { firstHost: _, ...rest } = options;
  const results = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => startSshd({ ...rest, address: `127.0.0.${first + i}` })),
  );
  const hosts = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await Promise.allSettled(hosts.map((h) => h.stop()));
    throw failed.reason;
  }
  return hosts;
}

/** Writes a known_hosts file with both host keys of every host (optionally under an alias). */
export function writeKnownHosts(
  path: string,
  hosts: ReadonlyArray<SshdHost | { host: SshdHost; alias: string }>,
): string {
  writeFileSync(
    path,
    hosts.map((h) => ("alias" in h ? h.host.knownHostsLines(h.alias) : h.knownHostsLines())).join(""),
  );
  return path;
}

// ---------------------------------------------------------------------------------------------
// Lab: everything a test file started, closed in one call

type Cleanup = () => void | Promise<void>;

/**
 * Tracks what a test (file) starts; `await lab.close()` in afterAll/afterEach stops all of it,
 * most recent first (sshds before the namespaces they run in). Idempotent; a closed Lab can be
 * used again (close() then tears down only what was started since).
 */
export class Lab {
  private cleanups: Cleanup[] = [];
  private closing: Promise<void> | undefined;

  /** Registers a cleanup of your own; run by close() in reverse order. */
  defer(fn: Cleanup): void {
    this.cleanups.push(fn);
  }

  tempDir(prefix = "reclaim-lab-"): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    const unregister = registerCleanup({ kind: "dir", path: dir });
    this.defer(() => {
      unregister();
      rmSync(dir, { recursive: true, force: true });
    });
    return dir;
  }

  /** A fresh client key pair in its own temp dir. */
  key(name = "id_ed25519", passphrase = ""): KeyPair {
    return generateKey(this.tempDir("reclaim-key-"), name, passphrase);
  }

  user(): TestUser {
    return ensureTestUser();
  }

  async sshd(options: SshdOptions): Promise<SshdHost> {
    const host = await startSshd(options);
    this.defer(() => host.stop());
    return host;
  }

  async fleet(n: number, options: Parameters<typeof startFleet>[1]): Promise<SshdHost[]> {
    const hosts = await startFleet(n, options);
    for (const h of hosts) this.defer(() => h.stop());
    return hosts;
  }

  async netns(name: string): Promise<NetnsLab> {
    const lab = await createNetnsLab(name);
    this.defer(() => lab.destroy());
    return lab;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    const run = async () => {
      const errors: unknown[] = [];
      while (this.cleanups.length > 0) {
        const c = this.cleanups.pop() as Cleanup;
        try {
          await c();
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, "lab cleanup failed");
    };
    this.closing = run().finally(() => {
      this.closing = undefined;
    });
    return this.closing;
  }
}

/** Mode and owner helper for images a test hands to the test user. */
export function giveToTestUser(path: string): void {
  const u = ensureTestUser();
  chownSync(path, u.uid, u.gid);
  if (statSync(path).isDirectory()) chmodSync(path, 0o755);
}
