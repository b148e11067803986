/**
 * `reclaim demo --vm`: the whole pipeline on a real Linux guest, with nothing to set up by hand and
 * nothing left behind. It makes a data disk that held since-deleted files, boots a small guest on
 * it under QEMU (TCG, loopback only), and runs a playbook for this machine through the same code
 * as `reclaim plan` and `reclaim apply`: zero-fill inside the guest, power it off from inside,
 * rewrite its image, start it again with the very command that first started it. Then it proves
 * the guest is back with its data intact and the image smaller, shows that a second run changes
 * nothing, powers the guest off and removes everything.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyCommand, planCommand, type RunOptions } from "../cli/commands/run.js";
import { type CliIo, print } from "../cli/io.js";
import { formatBytes } from "../config/units.js";
import { RunError } from "../errors.js";
import { createLocalTransport } from "../transport/local.js";
import { describeFailure, type Transport } from "../transport/transport.js";
import { writeBootInitrd } from "./boot-initrd.js";
import { makeDeletedFilesImage } from "./deleted-files-image.js";
import {
  endQemu,
  freeLoopbackPort,
  type QemuProcess,
  qemuOf,
  startQemu,
  waitEnded,
  waitForLogin,
} from "./demo-guest.js";
import { BUILD_TOOLS, ensureGuestArtifacts, guestCacheRoot } from "./guest-artifacts.js";
import { guestQemuArgs, QEMU } from "./guest-qemu-args.js";
import { type HostTool, missingPackages } from "./host-tools.js";
import { allocatedBytes, fileIdentity } from "./image-state.js";

const GUEST = "demo-vm";
const DISK = { sizeMiB: 768, deletedMiB: 600, survivorMiB: 8 };
/** From QEMU's start to an SSH login; a boot takes 4–8 s under TCG, far more on a busy machine. */
const BOOT_TIMEOUT_MS = 120_000;
const PORT_ATTEMPTS = 5;

/** What the VM demo runs besides what building the guest needs (BUILD_TOOLS). */
/** What the VM demo runs on this machine, besides building the guest (BUILD_TOOLS). */
export const VM_TOOLS: readonly HostTool[] = [
  { program: QEMU, debianPackage: "qemu-system-x86" },
  { program: "qemu-img", debianPackage: "qemu-utils" },
  { program: "mkfs.ext4", debianPackage: "e2fsprogs" },
  { program: "debugfs", debianPackage: "e2fsprogs" },
  { program: "e2fsck", debianPackage: "e2fsprogs" },
  { program: "ssh-keygen", debianPackage: "openssh-client" },
];

export async function vmDemo(options: { keep: boolean; signal?: AbortSignal }, io: CliIo): Promise<number> {
  const missing = missingPackages([...VM_TOOLS, ...BUILD_TOOLS], io.env);
  if (missing.length > 0) {
    throw new RunError(
      `demo --vm needs the Debian packages ${missing.join(", ")}: apt-get install ${missing.join(" ")} ` +
        "(in a checkout of reclaim, `RECLAIM_SETUP=test bash .ci/setup` installs them all)",
    );
  }
  const say = (text: string) => print(io.stdout, text);
  const begun = performance.now();
  const local = createLocalTransport();
  const signal = options.signal ? { signal: options.signal } : {};

  const cacheRoot = guestCacheRoot(io.env);
  say(`reclaim demo --vm: the guest's kernel and initramfs, from the cache ${cacheRoot}`);
  const artifacts = await ensureGuestArtifacts({
    cacheRoot,
    ...signal,
    log: (line) => say(`   ${line}`),
  });
  say(
    `   ${artifacts.built ? "built" : "cached"}: Debian ${artifacts.kernelPackage}, busybox and dropbear (${seconds(artifacts.ms)})`,
  );

  const dir = await mkdtemp(join(tmpdir(), "reclaim-demo-vm-"));
  const pidFile = join(dir, "qemu.pid");
  let guest: Transport | undefined;
  try {
    say(`\nWorking in ${dir}`);
    const image = join(dir, `${GUEST}.qcow2`);
    say(`\n== 1. A guest's data disk: ${image}`);
    const disk = await makeDeletedFilesImage(local, { path: image, ...DISK });
    const before = await allocatedBytes(local, image);
    say(
      `   ext4 on ${DISK.sizeMiB} MiB; ${DISK.deletedMiB} MiB of files written and deleted since, ${disk.survivor} ` +
        `(${DISK.survivorMiB} MiB, sha256 ${short(disk.survivorSha256)}) kept. The image still allocates ${formatBytes(before)} on the host.`,
    );

    say(`\n== 2. Boot the guest (${QEMU}, software emulation, reachable on 127.0.0.1 only)`);
    const identityFile = join(dir, "id_demo");
    const keygen = await local.run({
      argv: ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "reclaim-demo", "-f", identityFile],
      timeoutMs: 30_000,
    });
    if (keygen.exitCode !== 0) throw new RunError(describeFailure(keygen));
    const initrd = join(dir, "initrd.img");
    const publicKey = await readFile(`${identityFile}.pub`, "utf8");
    writeBootInitrd(artifacts.initrd, initrd, [publicKey]);
    const knownHostsFile = join(dir, "known_hosts");
    const consoleFile = join(dir, "console.log");
    const machine = {
      name: "reclaim-demo",
      kernel: artifacts.kernel,
      initrd,
      memoryMiB: 512,
      dataImage: image,
      // A trim inside the guest cannot reach the image: the guest-side step is a zero-fill.
      discard: "ignore",
      console: { file: consoleFile },
      pidFile,
    } as const;
    let argv: string[] | undefined;
    let port = 0;
    const t0 = performance.now();
    for (let attempt = 0; attempt < PORT_ATTEMPTS && !argv; attempt++) {
      port = await freeLoopbackPort();
      const candidate = [QEMU, ...guestQemuArgs({ ...machine, port })];
      if (await startQemu(local, candidate)) argv = candidate;
    }
    if (!argv) throw new RunError(`cannot start the guest: no free loopback port in ${PORT_ATTEMPTS} tries`);
    const login = { port, identityFile, knownHostsFile, consoleFile, pidFile, timeoutMs: BOOT_TIMEOUT_MS };
    guest = await waitForLogin({ ...login, ...signal });
    const first = running(pidFile);
    say(
      `   QEMU pid ${first.pid}; root@127.0.0.1:${port} answers over SSH after ${seconds(performance.now() - t0)}` +
        " (a per-run key; the host key from the guest's console).",
    );
    say(
      "   The disk is attached with discard=ignore: a trim inside the guest cannot reach the image, so reclaim fills with zeros.",
    );
    await guest.close();
    guest = undefined;

    const runOptions = await writePlaybook(dir, { image, port, argv, identityFile, knownHostsFile });
    const common: RunOptions = { ...runOptions, ...signal };

    say("\n== 3. The plan (reclaim plan: read-only)\n");
    const planned = await planCommand({ ...common, detailedExitcode: true }, io);
    if (planned !== 2)
      throw new RunError(`the demo expected changes to be pending (plan exit 2), got ${planned}`);

    say("\n== 4. Apply (reclaim apply --yes): fill inside, power off inside, rewrite, start again\n");
    const applied = await applyCommand({ ...common, yes: true }, io);
    if (applied !== 0) return applied;

    say("\n== 5. The guest is back, its data intact, its image smaller");
    const t1 = performance.now();
    guest = await waitForLogin({ ...login, ...signal });
    const second = running(pidFile);
    if (second.pid === first.pid) throw new RunError("the guest was not restarted (same QEMU pid)");
    say(
      `   QEMU pid ${second.pid}, started by the play's start_command; SSH answers ${seconds(performance.now() - t1)} after apply ended.`,
    );
    const sum = await guest.run({ argv: ["sha256sum", `/data/${disk.survivor}`], timeoutMs: 60_000 });
    const sha = sum.stdout.split(/\s/)[0] ?? "";
    if (sum.exitCode !== 0 || sha !== disk.survivorSha256)
      throw new RunError(
        `the survivor's checksum changed: ${sum.exitCode === 0 ? sha : describeFailure(sum)} (expected ${disk.survivorSha256})`,
      );
    say(`   sha256 of /data/${disk.survivor} inside the guest: ${short(sha)}, unchanged.`);
    const after = await allocatedBytes(local, image);
    say(`   The image allocates ${formatBytes(before)} → ${formatBytes(after)} on the host.`);

    say("\n== 6. Apply again: nothing left to do\n");
    const identity = await fileIdentity(local, image);
    const again = await applyCommand({ ...common, yes: true }, io);
    const still = qemuOf(pidFile);
    if (again !== 0 || still?.pid !== second.pid || (await fileIdentity(local, image)) !== identity)
      throw new RunError("the second run should have left the guest running and its image untouched");
    say("\n   The guest kept running (same QEMU pid) and the image was not touched (same inode and mtime).");

    say("\n== 7. Power the guest off");
    const t2 = performance.now();
    const off = await powerOff(guest, second);
    guest = undefined;
    say(`   ${off ? "powered off from inside" : "ended by signal"} in ${seconds(performance.now() - t2)}.`);
    say(
      `\nDemo done in ${seconds(performance.now() - begun)}: reclaimed ${formatBytes(before - after)} from a running guest; a second run changed nothing.`,
    );
    return 0;
  } finally {
    await guest?.close().catch(() => {});
    // Whatever went wrong, no QEMU of ours outlives the demo.
    const left = qemuOf(pidFile);
    if (left) {
      await endQemu(left);
      say(`(ended QEMU pid ${left.pid})`);
    }
    await local.close();
    if (options.keep) say(`(kept ${dir})`);
    else await rm(dir, { recursive: true, force: true });
  }
}

function running(pidFile: string): QemuProcess {
  const p = qemuOf(pidFile);
  if (!p) throw new RunError(`no QEMU runs for ${pidFile}`);
  return p;
}

/**
 * Inventory (this machine), playbook (one guest, reached directly on its forwarded port) and an
 * OpenSSH client config naming this run's key; returns plan/apply's options for them.
 */
async function writePlaybook(
  dir: string,
  o: { image: string; port: number; argv: string[]; identityFile: string; knownHostsFile: string },
): Promise<RunOptions> {
  const inventory = join(dir, "inventory.yml");
  const playbook = join(dir, "playbook.yml");
  const sshConfig = join(dir, "ssh_config");
  await writeFile(inventory, "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n");
  await writeFile(
    playbook,
    [
      "- name: Reclaim the demo guest's disk",
      "  hosts: localhost",
      "  policy:",
      "    min_reclaimable: 64MiB",
      "    min_ratio: 10%",
      "    zero: fill",
      "    shutdown: graceful",
      "    shutdown_timeout: 60s",
      "  vm:",
      "    manager: guest",
      "    start_command:",
      ...o.argv.map((a) => `      - ${JSON.stringify(a)}`),
      "  guests:",
      `    - name: ${GUEST}`,
      `      disks: [${JSON.stringify(o.image)}]`,
      `      ssh: { host: 127.0.0.1, port: ${o.port}, user: root, jump: none }`,
      "",
    ].join("\n"),
  );
  await writeFile(
    sshConfig,
    `Host 127.0.0.1\n  IdentityFile ${JSON.stringify(o.identityFile)}\n  IdentitiesOnly yes\n`,
  );
  return {
    inventory,
    playbooks: [playbook],
    forks: 1,
    json: false,
    ssh: { sshConfig, knownHosts: o.knownHostsFile },
  };
}

/** poweroff inside the guest, then QEMU's end (bounded); by signal if it will not. True: by itself. */
async function powerOff(guest: Transport, qemu: QemuProcess): Promise<boolean> {
  // The connection drops as the guest goes down: its answer does not matter, QEMU's end does.
  const asked = guest.run({ argv: ["poweroff"], timeoutMs: 10_000 }).catch(() => undefined);
  const ended = await waitEnded(qemu, 30_000);
  await guest.close().catch(() => {});
  await asked;
  if (!ended) await endQemu(qemu);
  return ended;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function short(sha: string): string {
  return `${sha.slice(0, 16)}…`;
}
