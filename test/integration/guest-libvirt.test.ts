/**
 * reclaim against a real libvirtd, over real SSH: the built CLI logs in to a hypervisor (an sshd on
 * loopback, as the test user with sudo), discovers the play's guests with `virsh list` and
 * `dumpxml`, reaches inside them through the QEMU guest agent (`access: agent`, no network
 * needed), and uses libvirt to shut a guest down for its rewrite and start it again. A domain that
 * refuses to shut down is left running and reported; a domain that is shut off is not contacted.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { ensureGuestArtifacts } from "../lab/guest/build.js";
import { allocatedBytes, type DataImage, makeDataImage } from "../lab/guest/data-image.js";
import { defineLabDomain, type LabDomain, type Libvirt, startLibvirt } from "../lab/guest/libvirt.js";
import { type KeyPair, Lab, type SshdHost, sudoAvailable, TEST_USER, writeKnownHosts } from "../lab/sshd.js";

const MiB = 1024 * 1024;
const lab = new Lab();
let libvirt: Libvirt | undefined;
afterAll(async () => {
  try {
    await libvirt?.close();
  } finally {
    await lab.close();
  }
}, 180_000);

let dir: string;
let home: string;
let key: KeyPair;
let hypervisor: SshdHost;
let images: Record<"trim" | "fill" | "refusing" | "off", DataImage>;
let trim: LabDomain;
let fill: LabDomain;
let refusing: LabDomain;
let off: LabDomain;
/** Discovery patterns take only this run's domains. */
const tag = `e2e${process.pid.toString(36)}`;

beforeAll(async () => {
  if (!sudoAvailable) throw new Error("sudo is not installed: the hypervisor's become cannot work");
  lab.user();
  ensureBuilt();
  const artifacts = await ensureGuestArtifacts();
  dir = lab.tempDir("reclaim-guest-libvirt-");
  // QEMU runs as libvirt-qemu: it must get through the directory to the images.
  chmodSync(dir, 0o755);
  home = lab.tempDir("reclaim-guest-libvirt-home-");
  key = lab.key("id_guest_libvirt");
  const shape = { sizeMiB: 512, fillMiB: 320, deleteMiB: 256 };
  const made = await Promise.all(
    ["trim", "fill", "refusing", "off"].map((n) => makeDataImage(join(dir, `${n}.qcow2`), shape)),
  );
  images = { trim: made[0], fill: made[1], refusing: made[2], off: made[3] } as typeof images;
  [hypervisor, libvirt] = await Promise.all([
    lab.sshd({ address: "127.0.0.10", authorizedKeys: [key.publicKey] }),
    startLibvirt(),
  ]);
  const lv = libvirt;
  const common = { artifacts, authorizedKey: key.publicKey, identityFile: key.privateKey, memoryMiB: 384 };
  [trim, fill, refusing, off] = await Promise.all([
    defineLabDomain(lv, { ...common, name: `${tag}-trim`, dataImage: images.trim.path, discard: "unmap" }),
    defineLabDomain(lv, { ...common, name: `${tag}-fill`, dataImage: images.fill.path, discard: "ignore" }),
    defineLabDomain(lv, {
      ...common,
      name: `${tag}-refusing`,
      dataImage: images.refusing.path,
      discard: "ignore",
      refuseShutdown: true,
    }),
    defineLabDomain(lv, { ...common, name: `${tag}-off`, dataImage: images.off.path, start: false }),
  ]);
}, 300_000);

/** A play that discovers the domains matching `include` on the hypervisor, reached through sudo. */
function files(name: string, include: string, policy: string): string[] {
  const inventory = join(dir, "inventory.yml");
  writeFileSync(
    inventory,
    `all:\n  hosts:\n    kvm:\n      ansible_host: ${hypervisor.address}\n      ansible_port: ${hypervisor.port}\n      ansible_user: ${TEST_USER}\n      ansible_ssh_private_key_file: ${key.privateKey}\n`,
  );
  const playbook = join(dir, `${name}.yml`);
  writeFileSync(
    playbook,
    [
      `- name: ${name}`,
      "  hosts: kvm",
      "  become: true",
      `  policy: { min_reclaimable: 32MiB, shutdown: graceful, ${policy} }`,
      "  guests:",
      "    discover: libvirt",
      `    include: ["${include}"]`,
      "    access: agent",
      "",
    ].join("\n"),
  );
  const knownHosts = writeKnownHosts(join(dir, "known_hosts"), [hypervisor]);
  const sshConfig = join(dir, "ssh_config");
  writeFileSync(sshConfig, `Host *\n  IdentityFile ${key.privateKey}\n  IdentitiesOnly yes\n`);
  return ["-i", inventory, playbook, "--ssh-config", sshConfig, "--known-hosts", knownHosts];
}

function reclaim(args: readonly string[]): Promise<CliRun> {
  return runCliProcess(args, { HOME: home, SSH_AUTH_SOCK: "" });
}

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

async function state(domain: LabDomain): Promise<string> {
  return (await domain.state()).trim();
}

describe("guests under libvirt, discovered and reached through the guest agent", { timeout: 240_000 }, () => {
  it("trims a discovered guest through its agent while it runs; no shutdown is worth it", async () => {
    const before = allocatedBytes(images.trim.path);
    const run = await reclaim(["apply", "--yes", ...files("trim", trim.name, "zero: trim")]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stdout).toContain(`guest ${trim.name}`);
    expect(run.stdout).toMatch(/\/data: trimmed/);
    expect(run.stdout).toMatch(/the guest keeps running/);
    expect(allocatedBytes(images.trim.path)).toBeLessThan(before - 200 * MiB);
    expect(await state(trim)).toBe("running");
    const sum = await trim.ssh(`sha256sum ${images.trim.survivorPath}`);
    expect(sum.stdout.split(" ")[0]).toBe(images.trim.survivorSha256);
  });

  it("fills where discard does not reach the image, shuts down with virsh, rewrites, starts again", async () => {
    const before = allocatedBytes(images.fill.path);
    const plan = await reclaim(["plan", ...files("fill", fill.name, "zero: auto")]);
    expect(plan.code, shown(plan)).toBe(0);
    // libvirt's discard setting tells zero: auto that a trim could not reach the image.
    expect(plan.stdout).toMatch(/fill \/data with/);
    expect(plan.stdout).toMatch(/vm \(libvirt\): running; shut down only if, after the fill/);

    const run = await reclaim(["apply", "--yes", ...files("fill", fill.name, "zero: auto")]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stdout).toMatch(/\/data: wrote [\d.]+ MiB of zeros/);
    expect(run.stdout).toMatch(/\(shutdown, libvirt\): shut down in/);
    expect(run.stdout).toMatch(/changed .*fill\.qcow2: rewritten and verified/);
    expect(run.stdout).toMatch(/\(start, libvirt\): started again \(virsh start\)/);
    expect(allocatedBytes(images.fill.path)).toBeLessThan(before - 150 * MiB);
    expect(await state(fill)).toBe("running");
    await fill.waitForSsh();
    const sum = await fill.ssh(`sha256sum ${images.fill.survivorPath}`);
    expect(sum.stdout.split(" ")[0]).toBe(images.fill.survivorSha256);

    const second = await reclaim(["apply", "--yes", ...files("fill", fill.name, "zero: auto")]);
    expect(second.code, shown(second)).toBe(0);
    expect(second.stdout).not.toMatch(/\(shutdown, libvirt\)/);
    expect(second.stdout).toMatch(/^kvm\s+: ok=1 changed=0 /m);

    // Off again, the filesystem the guest wrote through the agent and the rewrite is clean.
    expect((await libvirt?.virsh(["shutdown", fill.name]))?.code).toBe(0);
    expect(await fill.waitForState("shut off", 60_000)).toBe(true);
    const raw = join(dir, "fill.raw");
    execFileSync("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", images.fill.path, raw]);
    execFileSync("e2fsck", ["-fn", raw], { stdio: "pipe" });
    execFileSync("rm", ["-f", raw]);
  });

  it("leaves a domain that refuses to shut down running, reports it failed, and keeps its image", async () => {
    const inode = statSync(images.refusing.path).ino;
    const run = await reclaim([
      "apply",
      "--yes",
      ...files("refusing", refusing.name, "zero: fill, shutdown_timeout: 8s"),
    ]);
    expect(run.code, shown(run)).toBe(2);
    expect(run.stdout).toMatch(
      /failed .*\(shutdown, libvirt\): did not shut down within 8\.0 s \(libvirt says running\); not forced off/,
    );
    expect(run.stdout).toMatch(/skipped .*refusing\.qcow2: the guest was not shut down/);
    expect(await state(refusing)).toBe("running");
    expect(statSync(images.refusing.path).ino).toBe(inode);
  });

  it("does not try to reach a domain libvirt reports shut off", async () => {
    const run = await reclaim(["plan", ...files("off", off.name, "zero: trim")]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stdout).toContain(`guest ${off.name}`);
    expect(run.stdout).toMatch(/libvirt says the guest is shut off: nothing runs inside it to trim or fill/);
    expect(run.stdout).toMatch(/vm \(libvirt\): shut off/);
  });

  it("starts a guest that a killed run of reclaim had shut down, and removes its marker", async () => {
    // What a run killed between its shutdown and its start leaves beside the image.
    const marker = join(dir, ".off.qcow2.reclaim-stopped");
    writeFileSync(
      marker,
      `${JSON.stringify({ guest: off.name, manager: "libvirt", since: new Date().toISOString() })}\n`,
    );
    const run = await reclaim(["apply", "--yes", ...files("off", off.name, "zero: trim")]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stdout).toMatch(/vm \(libvirt\): shut off: an interrupted run of reclaim shut it down/);
    expect(run.stdout).toMatch(/^started .*\(start, libvirt\): started again \(virsh start\)/m);
    expect(await state(off)).toBe("running");
    expect(existsSync(marker)).toBe(false);
    await off.waitForSsh();
  });
});
