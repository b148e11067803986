/**
 * The whole pipeline on real guests, over real SSH: the built CLI logs in to a hypervisor (an sshd
 * on loopback, as the test user with sudo), reaches each running QEMU guest through that
 * connection, frees blocks inside it, shuts it down from inside (the guest manager), rewrites its
 * image, and runs the play's start_command. Then the guest boots again from the rewritten image:
 * the file that had to survive has its checksum, the filesystem is clean, and a second run
 * changes nothing. A guest that will not power off is left running, reported failed, untouched.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, ensureBuilt, runCliProcess, startCli } from "../helpers/cli.js";
import { ensureGuestArtifacts, type GuestArtifacts } from "../lab/guest/build.js";
import { allocatedBytes, type DataImage, makeDataImage } from "../lab/guest/data-image.js";
import { bootGuest, type GuestVm } from "../lab/guest/vm.js";
import { type KeyPair, Lab, type SshdHost, sudoAvailable, TEST_USER, writeKnownHosts } from "../lab/sshd.js";

const MiB = 1024 * 1024;
const lab = new Lab();
afterAll(() => lab.close(), 90_000);

let dir: string;
let home: string;
let key: KeyPair;
let hypervisor: SshdHost;
let artifacts: GuestArtifacts;
/** discard=ignore: a trim cannot reach the image, so the run fills, shuts down and rewrites. */
let fillImage: DataImage;
/** discard=unmap: the trim alone gives the space back; no shutdown is worth it. */
let trimImage: DataImage;
/** Its poweroff does nothing: it never shuts down. */
let stubbornImage: DataImage;
let fillGuest: GuestVm;
let trimGuest: GuestVm;
let stubbornGuest: GuestVm;

const shape = { sizeMiB: 1024, fillMiB: 700, deleteMiB: 600 };

function boot(image: DataImage, name: string, discard: "unmap" | "ignore"): Promise<GuestVm> {
  return bootGuest({
    dataImage: image.path,
    discard,
    lab,
    artifacts,
    name,
    identityFile: key.privateKey,
    authorizedKey: key.publicKey,
  });
}

beforeAll(async () => {
  if (!sudoAvailable) throw new Error("sudo is not installed: the hypervisor's become cannot work");
  lab.user();
  ensureBuilt();
  artifacts = await ensureGuestArtifacts();
  dir = lab.tempDir("reclaim-guest-lifecycle-");
  home = lab.tempDir("reclaim-guest-lifecycle-home-");
  key = lab.key("id_lifecycle");
  [hypervisor, fillImage, trimImage, stubbornImage] = (await Promise.all([
    lab.sshd({ address: "127.0.0.9", authorizedKeys: [key.publicKey] }),
    makeDataImage(join(dir, "fill.qcow2"), shape),
    makeDataImage(join(dir, "trim.qcow2"), shape),
    makeDataImage(join(dir, "stubborn.qcow2"), { sizeMiB: 512, fillMiB: 320, deleteMiB: 256 }),
  ])) as [SshdHost, DataImage, DataImage, DataImage];
  [fillGuest, trimGuest, stubbornGuest] = await Promise.all([
    boot(fillImage, "fill", "ignore"),
    boot(trimImage, "trim", "unmap"),
    boot(stubbornImage, "stubborn", "unmap"),
  ]);
}, 300_000);

/**
 * Inventory, playbook and SSH files for one guest on the hypervisor. The guest is reached at
 * 127.0.0.1:<its forwarded port> through the hypervisor's connection.
 */
function files(guest: GuestVm, image: DataImage, zero: string, extra = ""): string[] {
  const inventory = join(dir, `${guest.name}-inventory.yml`);
  writeFileSync(
    inventory,
    `all:\n  hosts:\n    kvm:\n      ansible_host: ${hypervisor.address}\n      ansible_port: ${hypervisor.port}\n      ansible_user: ${TEST_USER}\n      ansible_ssh_private_key_file: ${key.privateKey}\n`,
  );
  const playbook = join(dir, `${guest.name}-${zero}.yml`);
  writeFileSync(
    playbook,
    [
      "- name: lifecycle",
      "  hosts: kvm",
      "  become: true",
      `  policy: { min_reclaimable: 64MiB, zero: ${zero}, fill_reserve: 5%, shutdown: graceful, shutdown_timeout: ${extra || "60s"} }`,
      `  vm: { manager: guest, start_command: [touch, "${dir}/started-{guest}"] }`,
      "  guests:",
      `    - name: ${guest.name}`,
      `      disks: [${image.path}]`,
      `      ssh: { host: 127.0.0.1, port: ${guest.sshPort}, user: root }`,
      "",
    ].join("\n"),
  );
  const knownHosts = writeKnownHosts(join(dir, `${guest.name}-known_hosts`), [hypervisor]);
  writeFileSync(knownHosts, execFileSync("cat", [knownHosts, guest.knownHostsFile]));
  const sshConfig = join(dir, `${guest.name}-ssh_config`);
  writeFileSync(sshConfig, `Host *\n  IdentityFile ${key.privateKey}\n  IdentitiesOnly yes\n`);
  return ["-i", inventory, playbook, "--ssh-config", sshConfig, "--known-hosts", knownHosts];
}

function reclaim(args: readonly string[]): Promise<CliRun> {
  if (process.env.RECLAIM_DEBUG_CLI) {
    const { child, done } = startCli(args, { HOME: home, SSH_AUTH_SOCK: "" });
    child.stdout?.on("data", (c: Buffer) => process.stderr.write(c));
    return done;
  }
  return runCliProcess(args, { HOME: home, SSH_AUTH_SOCK: "" });
}

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

/** e2fsck -fn on a raw copy of the image's filesystem: clean means exit 0. */
function fsckClean(image: string): void {
  const raw = join(dir, "fsck.raw");
  execFileSync("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", image, raw]);
  try {
    execFileSync("e2fsck", ["-fn", raw], { stdio: "pipe" });
  } finally {
    execFileSync("rm", ["-f", raw]);
  }
}

async function survivorIntact(guest: GuestVm, image: DataImage): Promise<void> {
  const r = await guest.ssh(`sha256sum ${image.survivorPath}`);
  expect(r.stdout.split(" ")[0]).toBe(image.survivorSha256);
}

describe("a running guest shut down for its rewrite (guest manager, over SSH)", { timeout: 240_000 }, () => {
  it("zero-fills, powers the guest off from inside, rewrites, runs start_command; the data survives a reboot", async () => {
    const before = allocatedBytes(fillImage.path);
    const plan = await reclaim(["plan", "--detailed-exitcode", ...files(fillGuest, fillImage, "fill")]);
    expect(plan.code, shown(plan)).toBe(2);
    expect(plan.stdout).toMatch(/inside the guest, first:\n\s+fill \/data with/);
    expect(plan.stdout).toMatch(
      /vm \(guest\): running; shut down only if, after the fill, a rewrite is worth it/,
    );

    const run = await reclaim(["apply", "--yes", ...files(fillGuest, fillImage, "fill")]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stdout).toMatch(/\/data: wrote [\d.]+ MiB of zeros/);
    expect(run.stdout).toMatch(/^stopped kvm fill \(shutdown, guest\): shut down in/m);
    expect(run.stdout).toMatch(/changed .*fill\.qcow2/);
    expect(run.stdout).toMatch(/^started kvm fill \(start, guest\): started again \(touch /m);
    expect(existsSync(join(dir, "started-fill"))).toBe(true);
    // The guest powered itself off: QEMU is gone, the image rewritten from 700+ MiB to about its files.
    await fillGuest.exited;
    const after = allocatedBytes(fillImage.path);
    expect(after).toBeLessThan(before - 400 * MiB);
    expect(after).toBeLessThan(250 * MiB);
    fsckClean(fillImage.path);

    fillGuest = await boot(fillImage, "fill", "ignore");
    await survivorIntact(fillGuest, fillImage);
    const second = await reclaim(["apply", "--yes", ...files(fillGuest, fillImage, "fill")]);
    expect(second.code, shown(second)).toBe(0);
    expect(second.stdout).toMatch(/a fill could give back at most/);
    expect(second.stdout).not.toMatch(/\(shutdown, guest\)/);
    expect(second.stdout).toMatch(/changed=0 /);
    expect(fillGuest.alive()).toBe(true);
  });

  it("trims while it runs and, with the space already back, keeps it running: no shutdown is worth it", async () => {
    const before = allocatedBytes(trimImage.path);
    const run = await reclaim(["apply", "--yes", ...files(trimGuest, trimImage, "trim")]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stdout).toMatch(/\/data: trimmed/);
    expect(run.stdout).toMatch(/the guest keeps running \(no rewrite is worth its shutdown\)/);
    expect(run.stdout).not.toMatch(/\(shutdown, guest\)/);
    expect(allocatedBytes(trimImage.path)).toBeLessThan(before - 400 * MiB);
    // The recap credits the trim: what the image allocated before the run, and after.
    expect(run.stdout).toMatch(/^kvm\s+: ok=1 changed=0 .*reclaimed [4-9]\d\d(\.\d)? MiB$/m);
    expect(trimGuest.alive()).toBe(true);
    await survivorIntact(trimGuest, trimImage);
    await trimGuest.shutdown();
    fsckClean(trimImage.path);

    // Booted again: the data is there, and a second run finds nothing to give back.
    trimGuest = await boot(trimImage, "trim", "unmap");
    await survivorIntact(trimGuest, trimImage);
    const trimmed = allocatedBytes(trimImage.path);
    const second = await reclaim(["apply", "--yes", ...files(trimGuest, trimImage, "trim")]);
    expect(second.code, shown(second)).toBe(0);
    expect(second.stdout).toMatch(/^kvm\s+: ok=1 changed=0 /m);
    expect(allocatedBytes(trimImage.path)).toBeLessThanOrEqual(trimmed + 4 * MiB);
  });

  it("leaves a guest that will not power off running, reports it failed, and does not touch its image", async () => {
    // The lab's init now refuses every request to power off: the guest stays up whatever reclaim asks.
    await stubbornGuest.ssh("touch /run/reclaim.refuse-poweroff");
    const inode = statSync(stubbornImage.path).ino;
    // The fill makes a rewrite worth a shutdown, which the guest then refuses.
    const run = await reclaim(["apply", "--yes", ...files(stubbornGuest, stubbornImage, "fill", "5s")]);
    expect(run.code, shown(run)).toBe(2);
    expect(run.stdout).toMatch(
      /failed .*stubborn \(shutdown, guest\): did not shut down within 5\.0 s .*not forced off, its images untouched/,
    );
    expect(run.stdout).toMatch(/skipped .*stubborn\.qcow2: the guest was not shut down/);
    expect(run.stdout).toMatch(/^kvm\s+: ok=0 changed=0 skipped=1 failed=1 /m);
    expect(stubbornGuest.alive()).toBe(true);
    expect((await stubbornGuest.ssh("echo up")).stdout.trim()).toBe("up");
    expect(existsSync(join(dir, "started-stubborn"))).toBe(false);
    // Never rewritten: the same file, and nothing of a rewrite beside it.
    expect(statSync(stubbornImage.path).ino).toBe(inode);
    expect(readdirSync(dir).filter((n) => n.includes("stubborn") && n.includes(".reclaim-"))).toEqual([]);
    await stubbornGuest.kill();
  });
});
