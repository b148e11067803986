/**
 * libvirt in the lab, without systemd: virtlogd and libvirtd started directly (only when no
 * libvirtd answers already), and lab guests defined as libvirt domains — the same Debian kernel and
 * busybox/dropbear/qemu-ga initramfs as vm.ts, direct kernel boot, `<domain type='qemu'>` (software
 * emulation), the data image on virtio-blk, the serial console in a file, the guest agent's
 * virtio-serial channel, and QEMU's user network reachable only through a `hostfwd` from a free
 * port on 127.0.0.1 (added with `<qemu:commandline>`: libvirt 9.0 has no hostfwd without passt).
 * libvirt's default network is never started: its autostart link is removed before libvirtd starts.
 *
 * The libvirtd socket is machine-wide, so a Libvirt holds a file lock for its whole life: two test
 * files never use it at once. A guard process (ours, detached) holds a second lock and learns over
 * its stdin which domains and daemons are live; if the test process dies without close(), its stdin
 * closes and it destroys and undefines those domains and stops the daemons we started, before the
 * next Libvirt can start. QEMU processes and per-domain directories are registered with the reaper.
 * Leftover `reclaim-lab-*` domains (a guard that could not finish) are removed at start.
 *
 * QEMU runs as libvirt-qemu: per-domain files (kernel copy, per-boot initramfs) live in a 0755 temp
 * dir as 0644 files, and every directory above a data image must be searchable by others. libvirt's
 * dynamic ownership chowns the data image (and the kernel and initramfs, hence the copies) to
 * libvirt-qemu while the domain runs, and restores the owner when it stops.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { registerCleanup } from "../cleanup.js";
import { runSsh, type SshRun, sshArgs } from "../client.js";
import { withFileLock } from "../hostlock.js";
import { isAlive, type ProcInfo, procInfo, sleep, terminate } from "../proc.js";
import { freePort } from "../sshd.js";
import { ensureGuestArtifacts, type GuestArtifacts } from "./build.js";
import { bootKeys, tail, waitForLogin, within, writeBootInitrd } from "./vm.js";

export const LIBVIRT_URI = "qemu:///system";
/** Every lab domain's name starts with this; anything so named is the lab's to remove. */
export const LAB_DOMAIN_PREFIX = "reclaim-lab-";
const LOCK_FILE = "/run/reclaim-libvirt.lock";
const GUARD_LOCK_FILE = "/run/reclaim-libvirt-guard.lock";
const VIRTLOGD = "/usr/sbin/virtlogd";
const LIBVIRTD = "/usr/sbin/libvirtd";
const VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock";
const DEFAULT_NETWORK_AUTOSTART = "/etc/libvirt/qemu/networks/autostart/default.xml";
const ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" };

export interface VirshResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Libvirt {
  /** "qemu:///system". */
  uri: string;
  /** Which daemons this object started (and close() stops); false: one was running already. */
  started: { virtlogd: boolean; libvirtd: boolean };
  /** Time from the call to libvirtd answering, ms. */
  readyMs: number;
  /** Runs `virsh -c URI ARGS…` (argv, no shell), killed after `timeoutMs` (default 60 s). */
  virsh(args: readonly string[], timeoutMs?: number): Promise<VirshResult>;
  /**
   * Destroys and undefines every domain defined through this object, stops the daemons it
   * started (by PID) and releases the locks. Idempotent.
   */
  close(): Promise<void>;
}

export interface StartLibvirtOptions {
  /** Bound on waiting for another test file's Libvirt to close (default 10 minutes). */
  lockTimeoutMs?: number;
  /** Bound on libvirtd's start until `virsh version` answers (default 60 s). */
  readyTimeoutMs?: number;
}

/** What this module keeps per Libvirt besides its public face. */
interface Inner {
  guard: Guard;
  domains: Set<LabDomain>;
  closing: boolean;
}
const inner = new WeakMap<Libvirt, Inner>();

function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `virsh -c qemu:///system ARGS`, bounded; a timed-out virsh is killed and reported as code null. */
export function virsh(args: readonly string[], timeoutMs = 60_000): Promise<VirshResult> {
  const started = performance.now();
  return new Promise((resolvePromise) => {
    const child = spawn("virsh", ["-c", LIBVIRT_URI, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: ENV,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      stderr += c;
    });
    const timer = setTimeout(() => {
      stderr += `virsh ${args[0] ?? ""}: killed after ${timeoutMs} ms\n`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (e) => {
      stderr += `spawn error: ${e.message}\n`;
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}

async function libvirtdAnswers(): Promise<boolean> {
  return (await virsh(["version"], 10_000)).code === 0;
}

/** True when something accepts connections on the unix socket (a stale socket file refuses). */
function socketAnswers(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolvePromise) => {
    const socket: Socket = connect({ path });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolvePromise(ok);
    };
    const timer = setTimeout(() => done(false), 2000);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

// ---------------------------------------------------------------------------------------------
// The guard: cleans up after a test process that died without close()

/**
 * Runs under `flock GUARD_LOCK_FILE`. Reads "domain NAME", "forget-domain NAME", "daemon PID:START",
 * "forget-daemon PID:START" lines until stdin closes, then destroys and undefines the domains still
 * listed and stops the daemons still listed (only while PID and start time match). After a normal
 * close() nothing is listed and it just exits.
 */
const GUARD_SCRIPT = `
echo locked
domains=" "
daemons=" "
drop() { out=" "; for x in $1; do [ "$x" = "$2" ] || out="$out$x "; done; echo "$out"; }
while read -r op arg; do
  case "$op" in
    domain) domains="$domains$arg " ;;
    forget-domain) domains=$(drop "$domains" "$arg") ;;
    daemon) daemons="$daemons$arg " ;;
    forget-daemon) daemons=$(drop "$daemons" "$arg") ;;
  esac
done
for d in $domains; do
  timeout 30 virsh -c ${LIBVIRT_URI} destroy "$d" >/dev/null 2>&1
  timeout 30 virsh -c ${LIBVIRT_URI} undefine "$d" >/dev/null 2>&1
done
# Field 22 of /proc/PID/stat is the start time: a recycled PID is never signalled.
ours() { want=$2; set -- $(cut -d')' -f2- "/proc/$1/stat" 2>/dev/null); [ "\${1:-}" != Z ] && [ "\${20:-}" = "$want" ]; }
alive() { left=""; for p in $daemons; do ours "\${p%%:*}" "\${p#*:}" && left="$left $p"; done; [ -n "$left" ]; }
for p in $daemons; do ours "\${p%%:*}" "\${p#*:}" && kill -TERM "\${p%%:*}"; done
i=0
while [ "$i" -lt 100 ] && alive; do sleep 0.1; i=$((i + 1)); done
for p in $left; do ours "\${p%%:*}" "\${p#*:}" && kill -KILL "\${p%%:*}"; done
exit 0
`;

interface Guard {
  child: ChildProcess;
  send(line: string): void;
  /** Closes its stdin and waits (bounded) for it to exit; SIGKILL by PID after that. */
  end(): Promise<void>;
}

async function startGuard(timeoutMs: number): Promise<Guard> {
  const child = spawn(
    "flock",
    ["-w", String(Math.ceil(timeoutMs / 1000)), GUARD_LOCK_FILE, "sh", "-c", GUARD_SCRIPT, "guard"],
    { detached: true, stdio: ["pipe", "pipe", "pipe"], env: ENV },
  );
  const exited = new Promise<void>((r) => child.once("close", () => r()));
  child.stdin?.on("error", () => {});
  await new Promise<void>((resolvePromise, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`libvirt lab: guard lock ${GUARD_LOCK_FILE} not acquired within ${timeoutMs} ms`));
    }, timeoutMs + 2000);
    child.stdout?.setEncoding("utf8").on("data", (c: string) => {
      out += c;
      if (out.includes("locked")) {
        clearTimeout(timer);
        resolvePromise();
      }
    });
    child.stderr?.setEncoding("utf8").on("data", (c: string) => {
      err += c;
    });
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`libvirt lab: guard exited ${code}: ${err.trim()}`));
    });
  });
  // The guard must outlive this process if it dies; it must not keep it alive either.
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) (s as Socket | null)?.unref();
  return {
    child,
    send(line) {
      if (child.stdin?.writable) child.stdin.write(`${line}\n`);
    },
    async end() {
      child.stdin?.end();
      if (!(await within(exited, 90_000)) && child.pid) {
        const p = procInfo(child.pid);
        if (p) await terminate([p], 100);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The daemons

interface Daemon {
  proc: ProcInfo;
  exited: () => boolean;
}

function startDaemon(argv: readonly string[], logFile: string, guard: Guard): Daemon {
  const fd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: ["ignore", fd, fd], env: ENV });
  } finally {
    closeSync(fd);
  }
  let gone = false;
  child.once("exit", () => {
    gone = true;
  });
  child.once("error", () => {
    gone = true;
  });
  const proc = child.pid ? procInfo(child.pid) : undefined;
  if (!proc) throw new Error(`libvirt lab: ${argv.join(" ")} did not start`);
  guard.send(`daemon ${proc.pid}:${proc.start}`);
  child.unref();
  return { proc, exited: () => gone || !isAlive(proc) };
}

async function stopDaemon(d: Daemon, guard: Guard): Promise<void> {
  const left = await terminate([d.proc], 10_000);
  if (left.length > 0) throw new Error(`libvirt lab: daemon ${d.proc.pid} survived SIGKILL`);
  guard.send(`forget-daemon ${d.proc.pid}:${d.proc.start}`);
}

/**
 * How libvirtd is started, and whether /dev/kvm is covered for its first moments. Here /dev/kvm
 * exists, only root may open it, and KVM cannot run a guest anyway. libvirt probes QEMU as root
 * (finds KVM) and then checks /dev/kvm as libvirt-qemu (finds it unusable): the two disagree, so
 * it throws its capabilities cache away and probes again on every start and every define/start
 * (4–12 s each, over a minute under load). libvirtd therefore starts in its own mount namespace
 * with /dev/kvm covered by an empty file: the probes find no KVM, which is what the access check
 * says too, and the cache holds (later starts answer in about 0.2 s). The cover is taken away once
 * libvirtd answers (uncoverKvm), because libvirt cannot carry a file mount under /dev into a
 * domain's own /dev. The host's /dev/kvm is never touched.
 */
function libvirtdArgv(dir: string): { argv: string[]; covered: boolean } {
  if (!existsSync("/dev/kvm")) return { argv: [LIBVIRTD], covered: false };
  const cover = join(dir, "no-kvm");
  writeFileSync(cover, "");
  chmodSync(cover, 0);
  return {
    argv: [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount --bind "$0" /dev/kvm && exec "$1"',
      cover,
      LIBVIRTD,
    ],
    covered: true,
  };
}

/** Unmounts the cover inside libvirtd's mount namespace (the PID is libvirtd's: sh and unshare exec). */
function uncoverKvm(libvirtd: ProcInfo): void {
  const r = spawnSync("nsenter", ["--target", String(libvirtd.pid), "--mount", "umount", "/dev/kvm"], {
    encoding: "utf8",
    timeout: 10_000,
    env: ENV,
  });
  if (r.status !== 0)
    throw new Error(`libvirt lab: cannot uncover /dev/kvm for libvirtd: ${r.stderr || r.error}`);
}

/** Destroys and undefines `name`, whatever state it is in; resolves once it is no longer defined. */
async function removeDomain(name: string): Promise<void> {
  await virsh(["destroy", name], 60_000);
  const r = await virsh(["undefine", name], 60_000);
  if (r.code !== 0 && (await virsh(["domstate", name], 30_000)).code === 0) {
    throw new Error(`libvirt lab: cannot undefine ${name}: ${r.stderr.trim()}`);
  }
}

/**
 * Starts (or joins) libvirt for one test file. Waits for the machine-wide lock first, so another
 * test file's domains and daemons are gone before this one's start.
 */
export async function startLibvirt(o: StartLibvirtOptions = {}): Promise<Libvirt> {
  const t0 = performance.now();
  if (process.getuid?.() !== 0) throw new Error("libvirt lab: needs root (qemu:///system, daemons)");
  if (!existsSync(LIBVIRTD) || !existsSync(VIRTLOGD)) {
    throw new Error(
      "libvirt lab: no libvirtd/virtlogd: apt-get install libvirt-daemon-system libvirt-clients (RECLAIM_SETUP=test bash .ci/setup)",
    );
  }
  const lockTimeoutMs = o.lockTimeoutMs ?? 600_000;
  let release = () => {};
  const released = new Promise<void>((r) => {
    release = r;
  });
  let acquired = () => {};
  const gotLock = new Promise<void>((r) => {
    acquired = r;
  });
  const holding = withFileLock(
    LOCK_FILE,
    () => {
      acquired();
      return released;
    },
    lockTimeoutMs,
  );
  await Promise.race([gotLock, holding]);

  const dir = mkdtempSync(join(tmpdir(), "reclaim-libvirt-"));
  const unregisterDir = registerCleanup({ kind: "dir", path: dir });
  const daemons: Daemon[] = [];
  let guard: Guard | undefined;
  const undo = async () => {
    for (const d of daemons.reverse()) if (guard) await stopDaemon(d, guard).catch(() => {});
    await guard?.end();
    unregisterDir();
    rmSync(dir, { recursive: true, force: true });
    release();
    await holding;
  };
  try {
    // A guard that is still cleaning up after a dead test process holds this lock until it is done.
    guard = await startGuard(120_000);
    const g = guard;
    const started = { virtlogd: false, libvirtd: false };
    if (!(await libvirtdAnswers())) {
      // Its bridge would take a private address on this machine: never let libvirtd start it.
      if (lstatSafe(DEFAULT_NETWORK_AUTOSTART)) rmSync(DEFAULT_NETWORK_AUTOSTART, { force: true });
      if (!(await socketAnswers(VIRTLOGD_SOCKET))) {
        daemons.push(startDaemon([VIRTLOGD], join(dir, "virtlogd.log"), g));
        started.virtlogd = true;
      }
      const how = libvirtdArgv(dir);
      const libvirtd = startDaemon(how.argv, join(dir, "libvirtd.log"), g);
      daemons.push(libvirtd);
      started.libvirtd = true;
      const readyTimeoutMs = o.readyTimeoutMs ?? 60_000;
      const deadline = Date.now() + readyTimeoutMs;
      let ready = false;
      for (let i = 0; i < 1000 && !ready && Date.now() < deadline; i++) {
        if (libvirtd.exited()) break;
        ready = await libvirtdAnswers();
        if (!ready) await sleep(100);
      }
      if (!ready) {
        const log = existsSync(join(dir, "libvirtd.log"))
          ? readFileSync(join(dir, "libvirtd.log"), "utf8")
          : "";
        throw new Error(
          `libvirt lab: libvirtd ${libvirtd.exited() ? "exited" : `not answering within ${readyTimeoutMs} ms`}:\n${tail(log, 20)}`,
        );
      }
      if (how.covered) uncoverKvm(libvirtd.proc);
    }
    // Left by a test process whose guard could not finish (we hold the lock: nobody else's).
    const list = await virsh(["list", "--all", "--name"], 30_000);
    for (const name of list.stdout.split("\n").map((l) => l.trim())) {
      if (name.startsWith(LAB_DOMAIN_PREFIX)) await removeDomain(name);
    }

    let closing: Promise<void> | undefined;
    const libvirt: Libvirt = {
      uri: LIBVIRT_URI,
      started,
      readyMs: performance.now() - t0,
      virsh,
      close() {
        closing ??= (async () => {
          const state = inner.get(libvirt);
          if (state) state.closing = true;
          const results = await Promise.allSettled(
            [...(state?.domains ?? [])].map((d) => d.destroyAndUndefine()),
          );
          await undo();
          const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
          if (failed.length > 0)
            throw new AggregateError(
              failed.map((f) => f.reason as unknown),
              "libvirt lab close",
            );
        })();
        return closing;
      },
    };
    inner.set(libvirt, { guard: g, domains: new Set(), closing: false });
    return libvirt;
  } catch (e) {
    await undo();
    throw e;
  }
}

function lstatSafe(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Lab domains

export interface LabDomainOptions {
  /** Short name ([a-z0-9-]); the libvirt domain is `reclaim-lab-NAME`. */
  name: string;
  /** The qcow2 image attached as vda (virtio-blk), mounted at /data (ext4) in the guest. */
  dataImage: string;
  /** `<driver discard=…>`: "unmap" passes the guest's discards to the image (default). */
  discard?: "unmap" | "ignore";
  /** A virtio-serial channel for qemu-ga (org.qemu.guest_agent.0); default true. */
  agent?: boolean;
  /**
   * Boot with `reclaim.noacpi`: the guest ignores the power button and refuses the agent's
   * guest-shutdown, so `virsh shutdown` does nothing (a poweroff run inside still works).
   */
  refuseShutdown?: boolean;
  /** Guest memory (default 512 MiB). */
  memoryMiB?: number;
  /** Start it and wait for SSH (default true). */
  start?: boolean;
  /** Bound on start to a working SSH login (default 90 s). */
  bootTimeoutMs?: number;
  /** authorized_keys line(s) for root, besides the key ssh() uses. */
  authorizedKey?: string | readonly string[];
  /** Private key for ssh() (its `.pub` among authorizedKey); default: one generated for the domain. */
  identityFile?: string;
  /** Prebuilt artifacts (default: ensureGuestArtifacts()). */
  artifacts?: GuestArtifacts;
}

export interface LabDomain {
  /** The libvirt domain's name (`reclaim-lab-…`). */
  readonly name: string;
  readonly uuid: string;
  readonly dataImage: string;
  /** The domain's own directory (kernel copy, per-boot initramfs, console.log, known_hosts). */
  readonly dir: string;
  /** The forwarded port on 127.0.0.1 that reaches the guest's port 22 (may change on start()). */
  readonly sshPort: number;
  readonly identityFile: string;
  /** known_hosts with the current boot's host key for [127.0.0.1]:sshPort. */
  readonly knownHostsFile: string;
  /** The current boot's `ssh-ed25519 AAAA…` as printed on the console ("" before the first login). */
  readonly hostKey: string;
  /** Time of the last start() from `virsh start` to a working SSH login, ms. */
  readonly bootMs: number;
  /** The OpenSSH client arguments up to and including `root@127.0.0.1` (strict host-key checking). */
  sshArgs(): string[];
  /** Runs `command` in the guest as root with the real ssh client (default bound 60 s). */
  ssh(command: string, timeoutMs?: number): Promise<SshRun>;
  /** `virsh start`, then waitForSsh(). Resolves with the boot time, ms. */
  start(timeoutMs?: number): Promise<number>;
  /**
   * Waits (bounded, default 90 s) until the domain's current boot accepts root over SSH with its
   * own host key; also after a start that someone else ran (`virsh start` in the code under test).
   */
  waitForSsh(timeoutMs?: number): Promise<void>;
  /** `virsh domstate`: "running", "shut off", "paused", … */
  state(): Promise<string>;
  /** Polls state() until it is `state` (bounded); resolves whether it got there. */
  waitForState(state: string, timeoutMs: number): Promise<boolean>;
  /** The serial console file, all boots so far. */
  consoleLog(): string;
  /** QEMU's PID while the domain runs. */
  qemuPid(): number | undefined;
  /** `virsh destroy` + `virsh undefine`, the domain's directory removed. Idempotent. */
  destroyAndUndefine(): Promise<void>;
}

interface DomainXml {
  name: string;
  uuid: string;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  dataImage: string;
  discard: "unmap" | "ignore";
  consoleFile: string;
  agent: boolean;
  port: number;
}

function domainXml(d: DomainXml): string {
  const e = xmlEscape;
  return `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${e(d.name)}</name>
  <uuid>${d.uuid}</uuid>
  <memory unit='MiB'>${d.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>${e(d.kernel)}</kernel>
    <initrd>${e(d.initrd)}</initrd>
    <cmdline>${e(d.cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <!-- RDRAND lets the guest's RNG initialise at once (dropbearkey would otherwise wait). -->
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
    <feature policy='require' name='rdrand'/>
  </cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='${d.discard}' detect_zeroes='off'/>
      <source file='${e(d.dataImage)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='${e(d.consoleFile)}' append='on'/>
      <target port='0'/>
    </serial>
${d.agent ? "    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n" : ""}    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=labnet0,restrict=on,hostfwd=tcp:127.0.0.1:${d.port}-:22'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=labnet0,bus=pcie.0,addr=0x18'/>
  </qemu:commandline>
</domain>
`;
}

/** Throws unless every directory above `path` lets others (libvirt-qemu) through. */
function checkSearchable(path: string): void {
  for (let d = dirname(resolve(path)), i = 0; i < 64; d = dirname(d), i++) {
    if ((statSync(d).mode & 0o001) === 0) {
      throw new Error(
        `libvirt lab: QEMU runs as libvirt-qemu and cannot reach ${path}: ${d} is not searchable by others (chmod o+x)`,
      );
    }
    if (d === dirname(d)) break;
  }
}

/** Defines `reclaim-lab-NAME` and (unless `start: false`) starts it and waits for SSH. */
export async function defineLabDomain(libvirt: Libvirt, o: LabDomainOptions): Promise<LabDomain> {
  const state = inner.get(libvirt);
  if (!state || state.closing) throw new Error("libvirt lab: defineLabDomain needs an open Libvirt");
  if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(o.name)) throw new Error(`libvirt lab: bad domain name ${o.name}`);
  const name = `${LAB_DOMAIN_PREFIX}${o.name}`;
  for (const d of state.domains)
    if (d.name === name) throw new Error(`libvirt lab: ${name} is defined already`);
  if ((await virsh(["domstate", name], 30_000)).code === 0) {
    throw new Error(`libvirt lab: a domain ${name} exists already`);
  }
  if (!existsSync(o.dataImage)) throw new Error(`libvirt lab: no data image ${o.dataImage}`);
  const dataImage = resolve(o.dataImage);
  checkSearchable(dataImage);
  const artifacts = o.artifacts ?? (await ensureGuestArtifacts());

  const dir = mkdtempSync(join(tmpdir(), "reclaim-domain-"));
  chmodSync(dir, 0o755);
  const unregisterDir = registerCleanup({ kind: "dir", path: dir });
  let unregisterQemu = () => {};
  let defined = false;
  try {
    const { identityFile, keys } = bootKeys(name, dir, o);
    const kernel = join(dir, "kernel");
    copyFileSync(artifacts.kernel, kernel);
    const initrd = join(dir, "initrd.img");
    writeBootInitrd(artifacts.initrd, initrd, keys);
    for (const f of [kernel, initrd]) chmodSync(f, 0o644);
    const consoleFile = join(dir, "console.log");
    const knownHostsFile = join(dir, "known_hosts");
    const xmlFile = join(dir, "domain.xml");
    const uuid = randomUUID();
    const xml = (port: number) =>
      domainXml({
        name,
        uuid,
        memoryMiB: o.memoryMiB ?? 512,
        kernel,
        initrd,
        // panic=-1: a panic reboots at once, and on_reboot=destroy turns that into "shut off".
        cmdline: `console=ttyS0 quiet panic=-1${o.refuseShutdown ? " reclaim.noacpi" : ""}`,
        dataImage,
        discard: o.discard ?? "unmap",
        consoleFile,
        agent: o.agent ?? true,
        port,
      });
    const define = async (port: number) => {
      writeFileSync(xmlFile, xml(port));
      const r = await virsh(["define", xmlFile], 60_000);
      if (r.code !== 0) throw new Error(`libvirt lab: virsh define ${name}: ${r.stderr.trim()}`);
    };
    let port = await freePort("127.0.0.1");
    state.guard.send(`domain ${name}`);
    await define(port);
    defined = true;

    const readConsole = () => {
      try {
        return readFileSync(consoleFile, "latin1");
      } catch {
        return "";
      }
    };
    const pidFile = `/run/libvirt/qemu/${name}.pid`;
    const currentQemu = (): ProcInfo | undefined => {
      try {
        const p = procInfo(Number(readFileSync(pidFile, "utf8").trim()));
        return p && isAlive(p) ? p : undefined;
      } catch {
        return undefined;
      }
    };
    /** Registers the running QEMU with the reaper (the previous boot's entry is dropped). */
    let registeredQemu: ProcInfo | undefined;
    const trackQemu = (p: ProcInfo | undefined) => {
      if (!p || (registeredQemu && registeredQemu.pid === p.pid && registeredQemu.start === p.start)) return;
      unregisterQemu();
      unregisterQemu = registerCleanup({ kind: "process", pid: p.pid, start: p.start });
      registeredQemu = p;
    };
    // Where in the console the boot we last logged in to had got to, and its QEMU: any
    // RECLAIM-INIT after that offset is a newer boot's.
    let loginOffset = readConsole().length;
    let loginQemu: ProcInfo | undefined;
    let hostKey = "";
    let bootMs = 0;
    let removing: Promise<void> | undefined;

    const args = () => [...sshArgs({ identityFile, knownHostsFile }), "-p", String(port), "root@127.0.0.1"];
    const domainState = async (): Promise<string> => {
      const r = await virsh(["domstate", name], 30_000);
      if (r.code !== 0) throw new Error(`libvirt lab: virsh domstate ${name}: ${r.stderr.trim()}`);
      return r.stdout.trim();
    };

    const dom: LabDomain = {
      name,
      uuid,
      dataImage,
      dir,
      get sshPort() {
        return port;
      },
      identityFile,
      knownHostsFile,
      get hostKey() {
        return hostKey;
      },
      get bootMs() {
        return bootMs;
      },
      sshArgs: args,
      ssh: (command, timeoutMs = 60_000) => runSsh([...args(), command], timeoutMs),
      async start(timeoutMs = o.bootTimeoutMs ?? 90_000) {
        const t0 = performance.now();
        let failure = "";
        let started = false;
        // QEMU exits at once when another process took the port meanwhile: pick another.
        for (let attempt = 0; attempt < 5 && !started; attempt++) {
          const r = await virsh(["start", name], 120_000);
          if (r.code === 0) {
            started = true;
            break;
          }
          failure = r.stderr.trim();
          if (!/host forwarding|hostfwd|Address already in use/i.test(failure)) break;
          port = await freePort("127.0.0.1");
          await define(port);
        }
        if (!started) throw new Error(`libvirt lab: virsh start ${name}: ${failure}`);
        trackQemu(currentQemu());
        await dom.waitForSsh(timeoutMs);
        bootMs = performance.now() - t0;
        return bootMs;
      },
      async waitForSsh(timeoutMs = o.bootTimeoutMs ?? 90_000) {
        const now = currentQemu();
        if (now && loginQemu && now.pid === loginQemu.pid && now.start === loginQemu.start) {
          // The boot we logged in to still runs: one login proves it still answers.
          const r = await runSsh([...args(), "true"], Math.min(timeoutMs, 20_000));
          if (r.code === 0) return;
          throw new Error(`libvirt lab: ${name}: ssh exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
        }
        const from = loginOffset;
        let qemu: ProcInfo | undefined;
        const bootConsole = () => {
          const text = readConsole();
          // A rotated or truncated log starts over.
          const after = text.length >= from ? text.slice(from) : text;
          const i = after.lastIndexOf("RECLAIM-INIT ");
          return i < 0 ? "" : after.slice(i);
        };
        hostKey = await waitForLogin({
          name,
          port,
          identityFile,
          knownHostsFile,
          console: bootConsole,
          timeoutMs,
          async ended() {
            const p = currentQemu();
            if (p) {
              qemu ??= p;
              trackQemu(p);
            }
            if (qemu && !isAlive(qemu)) return `QEMU exited (domain ${await domainState().catch(() => "?")})`;
            return undefined;
          },
        });
        loginQemu = qemu ?? currentQemu();
        loginOffset = readConsole().length;
      },
      state: domainState,
      async waitForState(want, timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        for (let i = 0; i < 10_000; i++) {
          if ((await domainState().catch(() => "")) === want) return true;
          if (Date.now() >= deadline) return false;
          await sleep(200);
        }
        return false;
      },
      consoleLog: () => readConsole(),
      qemuPid: () => currentQemu()?.pid,
      destroyAndUndefine() {
        removing ??= (async () => {
          await removeDomain(name);
          state.guard.send(`forget-domain ${name}`);
          state.domains.delete(dom);
          unregisterQemu();
          unregisterDir();
          rmSync(dir, { recursive: true, force: true });
        })();
        return removing;
      },
    };
    state.domains.add(dom);
    if (o.start ?? true) await dom.start();
    return dom;
  } catch (e) {
    for (const d of state.domains) if (d.name === name) state.domains.delete(d);
    if (defined) await removeDomain(name).catch(() => {});
    state.guard.send(`forget-domain ${name}`);
    unregisterQemu();
    unregisterDir();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
