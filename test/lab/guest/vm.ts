/**
 * Real Linux guest VMs for integration tests: QEMU under software emulation (TCG; no KVM here)
 * booting the cached Debian kernel + busybox/dropbear initramfs from build.ts, with one qcow2 data
 * disk on virtio-blk (mounted at /data in the guest) and QEMU's user network, reachable only
 * through a `hostfwd` from a free port on 127.0.0.1 to the guest's dropbear (root, keys only).
 * `restrict=on` keeps the guest from reaching the host or anything beyond it.
 *
 * Each boot gets its own temp dir (per-boot initramfs with the authorized keys, known_hosts, a
 * client key when none is given). QEMU is registered with the reaper, so a test process that dies
 * leaves no QEMU behind; shutdown()/kill() end it by PID. Several guests boot in parallel.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeBootInitrd } from "../../../src/demo/boot-initrd.js";
import { guestQemuArgs, QEMU } from "../../../src/demo/guest-qemu-args.js";
import { registerCleanup } from "../cleanup.js";
import { runSsh, type SshRun, sshArgs } from "../client.js";
import { isAlive, type ProcInfo, procInfo, signal, sleep } from "../proc.js";
import { freePort, generateKey, type Lab } from "../sshd.js";
import { ensureGuestArtifacts, type GuestArtifacts } from "./build.js";

/** QEMU's program and the per-boot initramfs (base + authorized keys), shared with `reclaim demo --vm`. */
export { QEMU, writeBootInitrd };

const LOG_LIMIT = 1 << 20;

export interface BootOptions {
  /** The qcow2 image attached as /dev/vda (virtio-blk) and mounted at /data (ext4) in the guest. */
  dataImage: string;
  /** authorized_keys line(s) for root, besides the key the VM uses for ssh() (see identityFile). */
  authorizedKey?: string | readonly string[];
  /**
   * Private key for ssh(); its `.pub` must be among the authorized keys. Default: a key generated
   * for this boot (authorized automatically).
   */
  identityFile?: string;
  /** Guest memory (default 512 MiB). */
  memoryMiB?: number;
  /** What QEMU does with the guest's discards: "unmap" passes them to the image (default). */
  discard?: "unmap" | "ignore";
  /** Bound on QEMU start to a working SSH login (default 90 s). */
  bootTimeoutMs?: number;
  /** A label for logs and QEMU's -name. */
  name?: string;
  /** Register kill() with this Lab, so `lab.close()` ends the VM. */
  lab?: Lab;
  /** Prebuilt artifacts (default: ensureGuestArtifacts()). */
  artifacts?: GuestArtifacts;
}

export interface GuestVm {
  name: string;
  /** The forwarded port on 127.0.0.1 that reaches the guest's port 22. */
  sshPort: number;
  /** QEMU's PID. */
  pid: number;
  /** This boot's temp dir (removed when the VM ends). */
  dir: string;
  dataImage: string;
  discard: "unmap" | "ignore";
  /** Private key ssh() logs in with (root). */
  identityFile: string;
  /** known_hosts holding the guest's per-boot ed25519 host key for [127.0.0.1]:sshPort. */
  knownHostsFile: string;
  /** `ssh-ed25519 AAAA…` as the guest printed it on its console. */
  hostKey: string;
  /** Time from QEMU's start to the first successful SSH login, ms. */
  bootMs: number;
  artifacts: GuestArtifacts;
  /** The serial console so far (kernel warnings, init's RECLAIM- lines, dropbear's log). */
  consoleLog(): string;
  /** QEMU's own stderr so far. */
  qemuLog(): string;
  /** The OpenSSH client arguments up to and including `root@127.0.0.1` (strict host-key checking). */
  sshArgs(): string[];
  /** Runs `command` in the guest as root with the real ssh client (default bound 60 s). */
  ssh(command: string, timeoutMs?: number): Promise<SshRun>;
  alive(): boolean;
  /** Resolves when QEMU has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Unmounts /data and powers off from inside the guest, waits (bounded) for QEMU to exit, then
   * SIGTERM / SIGKILL by PID as a last resort. Idempotent. Resolves true when the guest powered
   * off by itself.
   */
  shutdown(timeoutMs?: number): Promise<boolean>;
  /** Ends QEMU now: SIGTERM (QEMU flushes and exits), SIGKILL after 3 s. Idempotent. */
  kill(): Promise<void>;
}

/** Resolves true when `p` settles within `ms`; unlike a race with sleep(), no timer outlives it. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

export function tail(text: string, lines: number): string {
  return text.replace(/\r/g, "").trimEnd().split("\n").slice(-lines).join("\n");
}

/** Resolves true when the port answers with an SSH banner within `timeoutMs`. QEMU's user network
 * accepts the TCP connection on the host side before the guest listens, so connecting is not enough. */
function sshBanner(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: "127.0.0.1", port });
    let got = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setEncoding("latin1");
    socket.on("data", (c: string) => {
      got += c;
      if (got.includes("SSH-2.0-")) done(true);
    });
    socket.once("error", () => done(false));
    socket.once("close", () => done(false));
  });
}

/**
 * The keys a boot authorizes for root, and the private key its ssh() uses: `identityFile` when
 * given (its `.pub` must be among `authorizedKey`), else a key generated in `dir` and authorized.
 */
export function bootKeys(
  name: string,
  dir: string,
  o: { authorizedKey?: string | readonly string[] | undefined; identityFile?: string | undefined },
): { identityFile: string; keys: string[] } {
  const keys = typeof o.authorizedKey === "string" ? [o.authorizedKey] : [...(o.authorizedKey ?? [])];
  let identityFile = o.identityFile;
  if (!identityFile) {
    const own = generateKey(dir, "id_guest");
    identityFile = own.privateKey;
    keys.push(own.publicKey);
  }
  if (keys.length === 0) throw new Error(`guest ${name}: no authorized key`);
  return { identityFile, keys };
}

export interface LoginWait {
  /** Names the guest in messages. */
  name: string;
  /** The forwarded port on 127.0.0.1. */
  port: number;
  identityFile: string;
  /** Written with the host key this boot prints on its console. */
  knownHostsFile: string;
  /** This boot's serial console so far. */
  console: () => string;
  /** Why the guest is gone, once it is (QEMU exited); undefined while it runs. */
  ended: () => Promise<string | undefined>;
  /** More to show when the boot fails (QEMU's stderr). */
  details?: () => string;
  timeoutMs: number;
}

/**
 * Waits (bounded) for init's RECLAIM-HOSTKEY and RECLAIM-READY on the console, writes known_hosts,
 * then for an SSH banner and a real login as root. Resolves with the host key; throws with the
 * console's tail when init fails, the guest ends or time runs out.
 */
export async function waitForLogin(w: LoginWait): Promise<string> {
  const fail = (why: string): Error => {
    const details = w.details?.().trim();
    return new Error(
      `guest ${w.name} (port ${w.port}) did not come up: ${why}\n` +
        `--- console, last 40 lines ---\n${tail(w.console(), 40)}\n` +
        (details ? `--- qemu stderr ---\n${tail(details, 10)}\n` : ""),
    );
  };
  const deadline = Date.now() + w.timeoutMs;
  let hostKey = "";
  let lastSsh = "";
  for (let i = 0; i < 10_000; i++) {
    const text = w.console().replace(/\r/g, "");
    const failed = /^RECLAIM-FAIL (.*)$/m.exec(text);
    if (failed) throw fail(`init failed: ${failed[1]}`);
    const ended = await w.ended();
    if (ended) throw fail(ended);
    if (Date.now() > deadline) {
      throw fail(`no SSH login within ${w.timeoutMs} ms${lastSsh ? ` (last ssh: ${lastSsh})` : ""}`);
    }
    if (!hostKey) {
      // Only a complete line: a chunk boundary could otherwise cut the key short.
      const m = /^RECLAIM-HOSTKEY (ssh-ed25519 [A-Za-z0-9+/=]+) *\n/m.exec(text);
      if (m?.[1]) {
        hostKey = m[1];
        writeFileSync(w.knownHostsFile, `[127.0.0.1]:${w.port} ${hostKey}\n`);
      }
    }
    if (hostKey && /^RECLAIM-READY\b/m.test(text) && (await sshBanner(w.port, 2000))) {
      const remaining = Math.max(1000, deadline - Date.now());
      const r = await runSsh(
        [
          ...sshArgs({ identityFile: w.identityFile, knownHostsFile: w.knownHostsFile }),
          "-p",
          String(w.port),
          "root@127.0.0.1",
          "true",
        ],
        Math.min(20_000, remaining),
      );
      if (r.code === 0) return hostKey;
      lastSsh = `exit ${r.code ?? r.signal}: ${r.stderr.trim()}`;
    }
    await sleep(100);
  }
  throw fail("gave up polling");
}

interface Started {
  child: ChildProcess;
  proc: ProcInfo;
  port: number;
  console: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: () => boolean;
  unregister: () => void;
}

async function startQemu(args: string[], port: number, dir: string): Promise<Started> {
  const child = spawn(QEMU, args, {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" },
  });
  let consoleText = "";
  let stderrText = "";
  child.stdout?.setEncoding("utf8").on("data", (c: string) => {
    consoleText += c;
    if (consoleText.length > LOG_LIMIT) consoleText = consoleText.slice(-LOG_LIMIT);
  });
  child.stderr?.setEncoding("utf8").on("data", (c: string) => {
    stderrText += c;
    if (stderrText.length > LOG_LIMIT) stderrText = stderrText.slice(-LOG_LIMIT);
  });
  let exitedFlag = false;
  // "close" rather than "exit": by then QEMU's last words on stderr have been read too.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (code, sig) => {
      exitedFlag = true;
      resolve({ code, signal: sig });
    }),
  );
  child.once("error", (e) => {
    stderrText += `spawn error: ${e.message}\n`;
  });
  const proc = child.pid ? procInfo(child.pid) : undefined;
  if (!proc) {
    await within(exited, 2000);
    throw new Error(`${QEMU} did not start: ${stderrText.trim() || "no PID"}`);
  }
  const unregister = registerCleanup({ kind: "process", pid: proc.pid, start: proc.start, dir });
  // Neither QEMU nor its pipes keep the test process alive; shutdown()/kill() or the reaper end it.
  child.unref();
  for (const s of [child.stdout, child.stderr]) (s as Socket | null)?.unref();
  return {
    child,
    proc,
    port,
    console: () => consoleText,
    stderr: () => stderrText,
    exited,
    hasExited: () => exitedFlag,
    unregister,
  };
}

let bootCount = 0;

/** Boots a guest on `dataImage` and waits (bounded) until root can log in over SSH. */
export async function bootGuest(o: BootOptions): Promise<GuestVm> {
  const artifacts = o.artifacts ?? (await ensureGuestArtifacts());
  const name = o.name ?? `guest${++bootCount}`;
  const discard = o.discard ?? "unmap";
  const memoryMiB = o.memoryMiB ?? 512;
  const bootTimeoutMs = o.bootTimeoutMs ?? 90_000;
  if (!existsSync(o.dataImage)) throw new Error(`guest ${name}: no data image ${o.dataImage}`);

  const dir = mkdtempSync(join(tmpdir(), "reclaim-guest-"));
  const unregisterDir = registerCleanup({ kind: "dir", path: dir });
  let started: Started | undefined;
  try {
    const { identityFile, keys } = bootKeys(name, dir, o);
    const initrd = join(dir, "initrd.img");
    writeBootInitrd(artifacts.initrd, initrd, keys);
    const knownHostsFile = join(dir, "known_hosts");

    // A free port that QEMU then binds; if another process took it meanwhile QEMU exits at once
    // ("Could not set up host forwarding rule") and the next attempt picks another.
    const t0 = performance.now();
    let failure = "";
    for (let attempt = 0; attempt < 5 && !started; attempt++) {
      const port = await freePort("127.0.0.1");
      const s = await startQemu(
        guestQemuArgs({
          name: `reclaim-${name}`,
          kernel: artifacts.kernel,
          initrd,
          memoryMiB,
          dataImage: o.dataImage,
          discard,
          port,
          console: "stdio",
        }),
        port,
        dir,
      );
      // A bind failure shows within a moment; a working start keeps running.
      for (let i = 0; i < 10 && !s.hasExited(); i++) await sleep(50);
      if (!s.hasExited()) {
        started = s;
        break;
      }
      s.unregister();
      failure = s.stderr();
      if (!/host forwarding|hostfwd|Address already in use/i.test(failure)) break;
    }
    if (!started) throw new Error(`guest ${name}: ${QEMU} failed to start:\n${tail(failure, 20)}`);
    const s = started;

    const hostKey = await waitForLogin({
      name,
      port: s.port,
      identityFile,
      knownHostsFile,
      console: s.console,
      details: s.stderr,
      timeoutMs: bootTimeoutMs,
      async ended() {
        if (!s.hasExited()) return undefined;
        const e = await s.exited;
        return `QEMU exited (code ${e.code}, signal ${e.signal})`;
      },
    });
    const bootMs = performance.now() - t0;

    const finalIdentity = identityFile;
    let ending: Promise<boolean> | undefined;
    const finish = (graceful: boolean): boolean => {
      // A QEMU that survived SIGKILL stays registered: the reaper tries again when we exit.
      if (!s.hasExited() && isAlive(s.proc)) throw new Error(`guest ${name}: QEMU ${s.proc.pid} survived`);
      s.unregister();
      unregisterDir();
      rmSync(dir, { recursive: true, force: true });
      return graceful;
    };
    const killNow = async (): Promise<void> => {
      if (!s.hasExited()) {
        signal(s.proc, "SIGTERM");
        await within(s.exited, 3000);
      }
      if (!s.hasExited()) {
        signal(s.proc, "SIGKILL");
        await within(s.exited, 3000);
      }
    };
    const args = () => [
      ...sshArgs({ identityFile: finalIdentity, knownHostsFile }),
      "-p",
      String(s.port),
      "root@127.0.0.1",
    ];

    const vm: GuestVm = {
      name,
      sshPort: s.port,
      pid: s.proc.pid,
      dir,
      dataImage: o.dataImage,
      discard,
      identityFile: finalIdentity,
      knownHostsFile,
      hostKey,
      bootMs,
      artifacts,
      consoleLog: s.console,
      qemuLog: s.stderr,
      sshArgs: args,
      ssh: (command, timeoutMs = 60_000) => runSsh([...args(), command], timeoutMs),
      alive: () => !s.hasExited(),
      exited: s.exited,
      shutdown(timeoutMs = 20_000) {
        ending ??= (async () => {
          let graceful = false;
          if (!s.hasExited()) {
            // The connection drops when the guest powers off: its exit status does not matter.
            await runSsh(
              [
                ...args(),
                "sync; umount /data 2>/dev/null || mount -o remount,ro /data 2>/dev/null; poweroff -f",
              ],
              Math.min(10_000, timeoutMs),
            );
            await within(s.exited, timeoutMs);
            graceful = s.hasExited();
          }
          await killNow();
          return finish(graceful);
        })();
        return ending;
      },
      kill() {
        ending ??= (async () => {
          await killNow();
          return finish(false);
        })();
        return ending.then(() => undefined);
      },
    };
    o.lab?.defer(() => vm.kill());
    return vm;
  } catch (e) {
    if (started) {
      const s = started;
      signal(s.proc, "SIGKILL");
      await within(s.exited, 3000);
      s.unregister();
    }
    unregisterDir();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
