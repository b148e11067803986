/**
 * The guest of bench/vs-virt-sparsify: the same small Linux guest `reclaim demo --vm` boots (QEMU
 * under TCG, daemonized with a pidfile, its data disk at /data, SSH on a loopback port), so that
 * one argv both starts it and, as the play's `vm.start_command`, starts it again after a rewrite.
 * Only the QEMU our pidfile names is ever signalled.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeBootInitrd } from "../src/demo/boot-initrd.js";
import {
  endQemu,
  freeLoopbackPort,
  qemuOf,
  startQemu,
  waitEnded,
  waitForLogin,
} from "../src/demo/demo-guest.js";
import type { GuestArtifacts } from "../src/demo/guest-artifacts.js";
import { guestQemuArgs, QEMU } from "../src/demo/guest-qemu-args.js";
import { createLocalTransport } from "../src/transport/local.js";
import type { Transport } from "../src/transport/transport.js";

const BOOT_TIMEOUT_MS = 180_000;

export interface BenchGuest {
  name: string;
  image: string;
  discard: "unmap" | "ignore";
  port: number;
  /** QEMU's full argv (program first): what starts the guest, and again after its rewrite. */
  argv: string[];
  pidFile: string;
  /** The serial console, a file each start writes anew. */
  consoleFile: string;
  identityFile: string;
  knownHostsFile: string;
  /** From QEMU's start to a root login over SSH, ms. */
  bootMs: number;
}

/** An ed25519 key for root's logins into every guest of the run. */
export function makeKey(dir: string): { identityFile: string; publicKey: string } {
  const identityFile = join(dir, "id_bench");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "reclaim-bench", "-f", identityFile]);
  return { identityFile, publicKey: readFileSync(`${identityFile}.pub`, "utf8") };
}

/** Boots a guest on `image` and waits (bounded) until root can log in over SSH. */
export async function bootGuest(o: {
  name: string;
  dir: string;
  image: string;
  discard: "unmap" | "ignore";
  artifacts: GuestArtifacts;
  key: { identityFile: string; publicKey: string };
}): Promise<BenchGuest> {
  const initrd = join(o.dir, `${o.name}-initrd.img`);
  writeBootInitrd(o.artifacts.initrd, initrd, [o.key.publicKey]);
  const pidFile = join(o.dir, `${o.name}.pid`);
  const consoleFile = join(o.dir, `${o.name}-console.log`);
  const knownHostsFile = join(o.dir, `${o.name}-known_hosts`);
  const local = createLocalTransport();
  try {
    const t0 = performance.now();
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freeLoopbackPort();
      const argv = [
        QEMU,
        ...guestQemuArgs({
          name: `reclaim-bench-${o.name}`,
          kernel: o.artifacts.kernel,
          initrd,
          memoryMiB: 512,
          dataImage: o.image,
          discard: o.discard,
          console: { file: consoleFile },
          pidFile,
          port,
        }),
      ];
      if (!(await startQemu(local, argv))) continue;
      const guest: BenchGuest = {
        name: o.name,
        image: o.image,
        discard: o.discard,
        port,
        argv,
        pidFile,
        consoleFile,
        identityFile: o.key.identityFile,
        knownHostsFile,
        bootMs: 0,
      };
      await (await login(guest)).close();
      guest.bootMs = performance.now() - t0;
      return guest;
    }
    throw new Error(`guest ${o.name}: no free loopback port in 5 tries`);
  } finally {
    await local.close();
  }
}

/** Waits for the (re)started guest's SSH login; resolves with the open connection. */
export function login(g: BenchGuest): Promise<Transport> {
  return waitForLogin({
    port: g.port,
    identityFile: g.identityFile,
    knownHostsFile: g.knownHostsFile,
    consoleFile: g.consoleFile,
    pidFile: g.pidFile,
    timeoutMs: BOOT_TIMEOUT_MS,
  });
}

/**
 * Powers the guest off as reclaim's guest manager does (`poweroff` inside), and waits
 * until its QEMU has exited and released the image. True when it went down by itself.
 */
export async function powerOff(g: BenchGuest, timeoutMs = 60_000): Promise<boolean> {
  const qemu = qemuOf(g.pidFile);
  if (!qemu) return true;
  const guest = await login(g);
  // The connection drops as the guest goes down: its answer does not matter, QEMU's end does.
  const asked = guest.run({ argv: ["poweroff"], timeoutMs: 10_000 }).catch(() => undefined);
  const ended = await waitEnded(qemu, timeoutMs);
  await guest.close().catch(() => {});
  await asked;
  if (!ended) await endQemu(qemu);
  return ended;
}

/** Starts the guest again with its own argv (returns once QEMU has daemonized). */
export async function restart(g: BenchGuest): Promise<void> {
  const local = createLocalTransport();
  try {
    if (!(await startQemu(local, g.argv))) throw new Error(`guest ${g.name}: port ${g.port} taken meanwhile`);
  } finally {
    await local.close();
  }
}

/** sha256 of a file inside the running guest. */
export async function sha256In(g: BenchGuest, path: string): Promise<string> {
  const guest = await login(g);
  try {
    const r = await guest.run({ argv: ["sha256sum", path], timeoutMs: 120_000 });
    return r.exitCode === 0 ? (r.stdout.split(/\s/)[0] ?? "") : `error: ${r.stderr.trim()}`;
  } finally {
    await guest.close();
  }
}

/** Ends the guest's QEMU, if ours still runs: for clean-up after a failure. */
export async function endGuest(pidFile: string): Promise<void> {
  const q = qemuOf(pidFile);
  if (q) await endQemu(q);
}
