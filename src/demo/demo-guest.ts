/**
 * The demo's guest VM: QEMU daemonized with a pidfile (guest-qemu-args.ts), so that one argv both
 * starts it the first time and serves as the play's `vm.start_command` that starts it again after
 * its rewrite. Its init prints RECLAIM-HOSTKEY and RECLAIM-READY on the serial console, a file.
 *
 * A QEMU is ours when the PID in our pidfile is a live process whose command line names that
 * pidfile: only such a process is ever signalled.
 */
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { RunError } from "../errors.js";
import { resolveSshSettings } from "../transport/ssh/settings.js";
import { describeFailure, type Transport } from "../transport/transport.js";

/** A port on 127.0.0.1 nothing listens on right now. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/**
 * Runs `argv` (QEMU with guestQemuArgs and a pidFile) and returns once QEMU has daemonized. Resolves false when QEMU could
 * not set up the port forwarding (the port was taken meanwhile: try another); throws otherwise.
 */
export async function startQemu(local: Transport, argv: readonly string[]): Promise<boolean> {
  const r = await local.run({ argv, timeoutMs: 60_000 });
  if (r.exitCode === 0) return true;
  if (/host forwarding|hostfwd|Address already in use/i.test(r.stderr)) return false;
  throw new RunError(`cannot start the guest: ${describeFailure(r)}`);
}

export interface QemuProcess {
  pid: number;
  /** Start time in clock ticks since boot (field 22 of /proc/PID/stat): tells a reused PID apart. */
  start: number;
}

function procStat(pid: number): { start: number; state: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ppid ..." where comm may hold spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0] ?? "?", start: Number(rest[19]) };
  } catch {
    return undefined;
  }
}

/** The QEMU our pidfile names, if it runs and its command line names that pidfile. */
export function qemuOf(pidFile: string): QemuProcess | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").trim());
  } catch {
    return undefined; // QEMU removes its pidfile when it exits.
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  const stat = procStat(pid);
  if (!stat || stat.state === "Z") return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (!cmdline.includes(pidFile)) return undefined;
  } catch {
    return undefined;
  }
  return { pid, start: stat.start };
}

/** True while the very process `p` runs (a zombie has ended). */
export function isRunning(p: QemuProcess): boolean {
  const stat = procStat(p.pid);
  return stat !== undefined && stat.start === p.start && stat.state !== "Z";
}

/** Waits (polling, bounded) until `p` has ended; true when it did within `timeoutMs`. */
export async function waitEnded(p: QemuProcess, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (let i = 0; i < 10_000 && isRunning(p); i++) {
    if (performance.now() >= deadline) return false;
    await delay(50);
  }
  return !isRunning(p);
}

/** Ends QEMU `p` (and only it): SIGTERM, which it handles by exiting, then SIGKILL. */
export async function endQemu(p: QemuProcess): Promise<void> {
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    if (!isRunning(p)) return;
    try {
      process.kill(p.pid, sig);
    } catch {
      return; // Gone in between.
    }
    if (await waitEnded(p, 5000)) return;
  }
}

export interface GuestLogin {
  port: number;
  identityFile: string;
  /** Written with the host key the guest prints on its console. */
  knownHostsFile: string;
  consoleFile: string;
  pidFile: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

function consoleTail(text: string, lines = 20): string {
  return text.replace(/\r/g, "").trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * Waits (bounded in time and count) for the guest's host key and RECLAIM-READY on its console,
 * records the key in known_hosts, then logs in as root over SSH (the host key checked) and runs
 * `true`. Resolves with the open connection; throws with the console's tail when the guest fails,
 * its QEMU ends or time runs out.
 */
export async function waitForLogin(w: GuestLogin): Promise<Transport> {
  const deadline = performance.now() + w.timeoutMs;
  let text = "";
  let hostKey = "";
  let lastTry = "";
  const fail = (why: string) =>
    new RunError(
      `the guest did not come up: ${why}\n--- its console, last lines ---\n${consoleTail(text) || "(empty)"}`,
    );
  for (let i = 0; i < 5000; i++) {
    if (w.signal?.aborted) throw new RunError("interrupted while waiting for the guest");
    text = (await readFile(w.consoleFile, "utf8").catch(() => "")).replace(/\r/g, "");
    const failed = /^RECLAIM-FAIL (.*)$/m.exec(text);
    if (failed) throw fail(`its init failed: ${failed[1]}`);
    if (!qemuOf(w.pidFile)) throw fail("QEMU is not running");
    if (performance.now() > deadline)
      throw fail(`no SSH login within ${w.timeoutMs / 1000} s${lastTry ? ` (last try: ${lastTry})` : ""}`);
    if (!hostKey) {
      // Only a complete line: the key could otherwise be cut short.
      const m = /^RECLAIM-HOSTKEY (ssh-ed25519 [A-Za-z0-9+/=]+) *\n/m.exec(text);
      if (m?.[1]) {
        hostKey = m[1];
        await writeFile(w.knownHostsFile, `[127.0.0.1]:${w.port} ${hostKey}\n`);
      }
    }
    if (hostKey && /^RECLAIM-READY\b/m.test(text)) {
      try {
        const guest = await connectGuest(w);
        const r = await guest.run({ argv: ["true"], timeoutMs: 10_000 });
        if (r.exitCode === 0) return guest;
        await guest.close();
        lastTry = describeFailure(r);
      } catch (error) {
        lastTry = (error as Error).message;
      }
    }
    await delay(100);
  }
  throw fail("gave up waiting");
}

/** One SSH connection to the guest as root, with this run's key, checking its host key. */
async function connectGuest(w: GuestLogin): Promise<Transport> {
  const settings = resolveSshSettings(
    { alias: "demo-vm", address: "127.0.0.1", port: w.port, user: "root", privateKeyFile: w.identityFile },
    undefined,
    { knownHostsFile: w.knownHostsFile, strictHostKeyChecking: "yes" },
  );
  settings.connectTimeoutMs = 5000;
  // Loaded here: the plain demo never pays for ssh2.
  const { connectChain } = await import("../transport/ssh/connect.js");
  const { createSshTransport } = await import("../transport/ssh/ssh-transport.js");
  return createSshTransport("demo-vm", await connectChain(settings, { attempts: 1 }));
}
