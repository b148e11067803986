/**
 * A real Linux guest for the zero-fill kill trials, run the way `reclaim demo --vm` runs one:
 * QEMU daemonized with a pidfile, so the very command that started it is the play's
 * `vm.start_command` that starts it again after reclaim shut it down for its rewrite. One guest
 * serves all the trials of a run (a boot takes several seconds under software emulation).
 *
 * The start command is wrapped: before QEMU starts, `qemu-img check` (without -U: the guest is
 * off) of the image is appended to a log, so each rewrite's result is checked while nothing holds
 * the image. Each boot prints a fresh host key on the console; `waitUp()` records it.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { endQemu, type QemuProcess, qemuOf, startQemu, waitForLogin } from "../../src/demo/demo-guest.js";
import { guestQemuArgs, QEMU } from "../../src/demo/guest-qemu-args.js";
import { createLocalTransport } from "../../src/transport/local.js";
import type { CommandResult, Transport } from "../../src/transport/transport.js";
import { ensureGuestArtifacts } from "../lab/guest/build.js";
import { makeDataImage } from "../lab/guest/data-image.js";
import { writeBootInitrd } from "../lab/guest/vm.js";
import { freePort, type Lab, registerCleanup } from "../lab/sshd.js";

export const FILL_FILE = "/data/.reclaim-zero-fill";

export interface FillGuest {
  dir: string;
  image: string;
  /** Inventory, playbook and SSH options for `reclaim plan|apply`. */
  args: string[];
  /** sha256 of every file in /data when the guest was made: what no kill may change. */
  files: Map<string, string>;
  /** The QEMU that runs now, if any. */
  qemu(): QemuProcess | undefined;
  /** Waits (bounded) for a login to the guest that runs now, recording its host key. */
  waitUp(timeoutMs?: number): Promise<void>;
  /**
   * Before a trial: logged in to the QEMU that runs now (reclaim may have restarted it), or, when
   * an earlier trial left the guest off, started again with the play's start command.
   */
  ensureUp(): Promise<void>;
  /** Runs `script` in the guest as root (bounded); throws when the guest is not up. */
  sh(script: string, timeoutMs?: number): Promise<CommandResult>;
  /** Exit statuses of `qemu-img check` run by the start command, oldest first. */
  checks(): number[];
  /** Powers the guest off (bounded), then ends QEMU by PID if it is still there. */
  stop(): Promise<void>;
}

const BOOT_TIMEOUT_MS = 120_000;

export async function startFillGuest(
  lab: Lab,
  policy: string,
  disk: { sizeMiB: number; fillMiB: number; deleteMiB: number },
): Promise<FillGuest> {
  const artifacts = await ensureGuestArtifacts();
  const dir = lab.tempDir("reclaim-fault-guest-");
  // The image alone in its own directory: whatever else appears there is reclaim's.
  const imageDir = lab.tempDir("reclaim-fault-guest-image-");
  const image = join(imageDir, "guest.qcow2");
  const made = await makeDataImage(image, { ...disk, survivorMiB: 4, fileMiB: 8 });
  const identityFile = join(dir, "id_guest");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "fault-guest", "-f", identityFile]);
  const initrd = join(dir, "initrd.img");
  writeBootInitrd(artifacts.initrd, initrd, [readFileSync(`${identityFile}.pub`, "utf8")]);
  const knownHostsFile = join(dir, "known_hosts");
  const consoleFile = join(dir, "console.log");
  const pidFile = join(dir, "qemu.pid");
  const checkLog = join(dir, "checks.log");
  const local = createLocalTransport();

  let argv: string[] | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !argv; attempt++) {
    port = await freePort("127.0.0.1");
    const qemu = [
      QEMU,
      ...guestQemuArgs({
        name: "reclaim-fault-guest",
        kernel: artifacts.kernel,
        initrd,
        memoryMiB: 384,
        dataImage: image,
        discard: "ignore",
        port,
        console: { file: consoleFile },
        pidFile,
      }),
    ];
    const candidate = [
      "sh",
      "-c",
      'image=$1 log=$2; shift 2; qemu-img check -q -f qcow2 "$image" >>"$log.out" 2>&1; echo "$?" >>"$log"; exec "$@"',
      "start-guest",
      image,
      checkLog,
      ...qemu,
    ];
    if (await startQemu(local, candidate)) argv = candidate;
  }
  if (!argv) throw new Error("cannot start the guest: no free loopback port in 5 tries");

  let guest: Transport | undefined;
  /** The QEMU `guest` is connected to. */
  let connectedTo: number | undefined;
  let unregister: (() => void) | undefined;
  const track = () => {
    unregister?.();
    const q = qemuOf(pidFile);
    unregister = q ? registerCleanup({ kind: "process", pid: q.pid, start: q.start }) : undefined;
  };
  track();
  const waitUp = async (timeoutMs = BOOT_TIMEOUT_MS) => {
    await guest?.close().catch(() => {});
    guest = undefined;
    guest = await waitForLogin({ port, identityFile, knownHostsFile, consoleFile, pidFile, timeoutMs });
    connectedTo = qemuOf(pidFile)?.pid;
    track();
  };
  const startCommand = argv;
  const ensureUp = async () => {
    const q = qemuOf(pidFile);
    if (q && q.pid === connectedTo && guest) return;
    if (!q && !(await startQemu(local, startCommand))) throw new Error("cannot start the guest again");
    await waitUp();
  };
  const sh = async (script: string, timeoutMs = 60_000) => {
    if (!guest) throw new Error("the guest is not up");
    return guest.run({ argv: ["sh", "-c", script], timeoutMs });
  };
  const stop = async () => {
    await sh("sync; poweroff -f", 5000).catch(() => undefined);
    await guest?.close().catch(() => {});
    guest = undefined;
    const q = qemuOf(pidFile);
    if (q) await endQemu(q);
    unregister?.();
  };
  lab.defer(stop);

  await waitUp();
  const files = new Map<string, string>();
  const sums = await sh("cd /data && sha256sum -- *");
  for (const line of sums.stdout.trim().split("\n")) {
    const [sum, name] = line.split(/\s+/);
    if (sum && name) files.set(name, sum);
  }
  if (files.get("keep.bin") !== made.survivorSha256)
    throw new Error(`the guest's keep.bin is not the file made: ${sums.stdout}`);

  const inventory = join(dir, "inventory.yml");
  writeFileSync(inventory, "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n");
  const playbook = join(dir, "playbook.yml");
  writeFileSync(
    playbook,
    [
      "- name: zero-fill kill trials",
      "  hosts: localhost",
      `  policy: { ${policy} }`,
      "  vm:",
      "    manager: guest",
      "    start_command:",
      ...argv.map((a) => `      - ${JSON.stringify(a)}`),
      "  guests:",
      "    - name: fault-guest",
      `      disks: [${JSON.stringify(image)}]`,
      `      ssh: { host: 127.0.0.1, port: ${port}, user: root, jump: none }`,
      "",
    ].join("\n"),
  );
  const sshConfig = join(dir, "ssh_config");
  writeFileSync(
    sshConfig,
    `Host 127.0.0.1\n  IdentityFile ${JSON.stringify(identityFile)}\n  IdentitiesOnly yes\n`,
  );
  return {
    dir,
    image,
    args: ["-i", inventory, playbook, "--ssh-config", sshConfig, "--known-hosts", knownHostsFile],
    files,
    qemu: () => qemuOf(pidFile),
    waitUp,
    ensureUp,
    sh,
    checks: () => {
      try {
        return readFileSync(checkLog, "utf8").trim().split("\n").filter(Boolean).map(Number);
      } catch {
        return [];
      }
    },
    stop,
  };
}

/** Files of /data whose sha256 differs from when the guest was made (or that are gone). */
export async function changedFiles(g: FillGuest): Promise<string[]> {
  const r = await g.sh("sync; echo 3 > /proc/sys/vm/drop_caches; cd /data && sha256sum -- *", 120_000);
  const now = new Map<string, string>();
  for (const line of r.stdout.trim().split("\n")) {
    const [sum, name] = line.split(/\s+/);
    if (sum && name) now.set(name, sum);
  }
  return [...g.files].filter(([name, sum]) => now.get(name) !== sum).map(([name]) => name);
}
