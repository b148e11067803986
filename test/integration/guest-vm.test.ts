/**
 * The guest VM lab itself, on real guests: two QEMU guests (Debian's kernel, busybox + dropbear
 * initramfs, cached by build.ts) boot in parallel on their own loopback ports, each with a qcow2
 * data disk whose ext4 once held files since deleted. Inside the guest, `fstrim` gives that space
 * back to the host's image while the guest runs when the disk passes discards (discard=unmap) and
 * not when QEMU ignores them; the surviving file's checksum holds; shutdown leaves no QEMU behind.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuestArtifacts, type GuestArtifacts } from "../lab/guest/build.js";
import { allocatedBytes, type DataImage, makeDataImage } from "../lab/guest/data-image.js";
import { bootGuest, type GuestVm } from "../lab/guest/vm.js";
import { isAlive, processesMentioning, procInfo } from "../lab/proc.js";
import { Lab } from "../lab/sshd.js";

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

const lab = new Lab();
afterAll(() => lab.close(), 60_000);

let dir: string;
let artifacts: GuestArtifacts;
let unmapImage: DataImage;
let ignoreImage: DataImage;
let unmap: GuestVm;
let ignore: GuestVm;
const timings: Record<string, number> = {};

beforeAll(async () => {
  // A cold cache downloads and unpacks Debian's kernel package first (about 10 s here).
  artifacts = await ensureGuestArtifacts();
  timings[artifacts.built ? "artifactsBuiltMs" : "artifactsCachedMs"] = Math.round(artifacts.ms);
  dir = lab.tempDir("reclaim-guest-vm-");
  const t0 = performance.now();
  const shape = { sizeMiB: 512, fillMiB: 320, deleteMiB: 256 };
  [unmapImage, ignoreImage] = await Promise.all([
    makeDataImage(join(dir, "unmap.qcow2"), shape),
    makeDataImage(join(dir, "ignore.qcow2"), shape),
  ]);
  timings.imagesMs = Math.round(performance.now() - t0);
  const key = lab.key("id_guest_vm");
  const t1 = performance.now();
  [unmap, ignore] = await Promise.all([
    bootGuest({
      name: "unmap",
      dataImage: unmapImage.path,
      discard: "unmap",
      authorizedKey: key.publicKey,
      identityFile: key.privateKey,
      artifacts,
      lab,
    }),
    bootGuest({
      name: "ignore",
      dataImage: ignoreImage.path,
      discard: "ignore",
      authorizedKey: key.publicKey,
      identityFile: key.privateKey,
      artifacts,
      lab,
    }),
  ]);
  timings.parallelBootMs = Math.round(performance.now() - t1);
  timings.bootUnmapMs = Math.round(unmap.bootMs);
  timings.bootIgnoreMs = Math.round(ignore.bootMs);
}, 900_000);

afterAll(() => {
  console.info(`guest lab timings: ${JSON.stringify(timings)}`);
});

/** Runs `command` in the guest and insists on exit status 0. */
async function inGuest(vm: GuestVm, command: string): Promise<string> {
  const r = await vm.ssh(command);
  if (r.code !== 0) {
    throw new Error(`${vm.name}: \`${command}\` exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

describe("real guest VMs (QEMU, software emulation)", { timeout: 60_000 }, () => {
  it("boots two guests in parallel on distinct loopback ports; root logs in over SSH", async () => {
    expect(unmap.sshPort).not.toBe(ignore.sshPort);
    expect(unmap.pid).not.toBe(ignore.pid);
    expect(unmap.alive() && ignore.alive()).toBe(true);
    for (const vm of [unmap, ignore]) {
      // The host key came from the guest's console; the client checks it strictly.
      expect(readFileSync(vm.knownHostsFile, "utf8")).toBe(`[127.0.0.1]:${vm.sshPort} ${vm.hostKey}\n`);
      expect(vm.sshArgs()).toContain("StrictHostKeyChecking=yes");
      const out = await inGuest(vm, "id -u; uname -r; hostname");
      expect(out.split("\n").slice(0, 3)).toEqual(["0", artifacts.kernelVersion, "reclaim-guest"]);
    }
  });

  it("mounts the data disk at /data as ext4, without -o discard, with the survivor intact", async () => {
    for (const [vm, image] of [
      [unmap, unmapImage],
      [ignore, ignoreImage],
    ] as const) {
      const mount = await inGuest(vm, "awk '$2 == \"/data\" { print $1, $3, $4 }' /proc/mounts");
      const [device, type, options] = mount.trim().split(" ");
      expect([device, type]).toEqual(["/dev/vda", "ext4"]);
      expect(options?.split(",")).not.toContain("discard");
      const sum = await inGuest(vm, `sha256sum ${image.survivorPath}`);
      expect(sum.split(/\s+/)[0]).toBe(image.survivorSha256);
      const files = await inGuest(vm, "ls /data");
      expect(files.split("\n").filter((f) => f.startsWith("deleted-"))).toEqual([]);
      expect(files).toContain(image.keptFiles[0] ?? "kept-0.bin");
    }
  });

  it("with discard=unmap, fstrim in the running guest gives the deleted data back to the image", async () => {
    const before = allocatedBytes(unmapImage.path);
    expect(before).toBeGreaterThan(unmapImage.deletedBytes);
    const out = await inGuest(unmap, "sync; fstrim -v /data");
    const trimmed = Number(/(\d+) bytes trimmed/.exec(out)?.[1]);
    expect(trimmed).toBeGreaterThanOrEqual(unmapImage.deletedBytes);
    const after = allocatedBytes(unmapImage.path);
    timings.unmapAllocatedMiB = Math.round(before / MiB);
    timings.unmapAfterTrimMiB = Math.round(after / MiB);
    expect(unmap.alive()).toBe(true);
    expect(before - after).toBeGreaterThanOrEqual(0.9 * unmapImage.deletedBytes);
    // What is left is about the data still in the filesystem (plus its metadata).
    expect(after).toBeLessThan(unmapImage.keptBytes + 64 * MiB);
    // The surviving file reads back from the disk (not the page cache) unchanged.
    const sum = await inGuest(
      unmap,
      `echo 3 > /proc/sys/vm/drop_caches; sha256sum ${unmapImage.survivorPath}`,
    );
    expect(sum.split(/\s+/)[0]).toBe(unmapImage.survivorSha256);
  });

  it("with discard=ignore, the image keeps its allocation whatever fstrim reports", async () => {
    const before = allocatedBytes(ignoreImage.path);
    const r = await ignore.ssh("sync; fstrim -v /data");
    // With QEMU 7.2 the guest still sees discard support and fstrim reports success: nothing in
    // the guest tells that the discards never reach the image. Only the host's allocation does.
    expect(r.code === 0 ? r.stdout : r.stderr).toMatch(/bytes trimmed|not supported/i);
    const after = allocatedBytes(ignoreImage.path);
    timings.ignoreAllocatedMiB = Math.round(before / MiB);
    timings.ignoreAfterTrimMiB = Math.round(after / MiB);
    expect(Math.abs(before - after)).toBeLessThan(0.05 * ignoreImage.deletedBytes);
    expect(ignore.alive()).toBe(true);
  });

  it("shutdown powers both guests off from inside, leaving no QEMU and a clean filesystem", async () => {
    const vms = [unmap, ignore];
    const procs = vms.map((vm) => procInfo(vm.pid));
    const t0 = performance.now();
    const graceful = await Promise.all(vms.map((vm) => vm.shutdown()));
    timings.shutdownMs = Math.round(performance.now() - t0);
    expect(graceful).toEqual([true, true]);
    for (const [i, vm] of vms.entries()) {
      const p = procs[i];
      if (p) expect(isAlive(p)).toBe(false);
      expect(vm.alive()).toBe(false);
      expect(processesMentioning(vm.dir)).toEqual([]);
      expect(processesMentioning(vm.dataImage)).toEqual([]);
      expect(vm.consoleLog()).toMatch(/reboot: Power down/);
    }
    // QEMU released the image, whose qcow2 metadata and ext4 filesystem are both consistent.
    await execFileAsync("qemu-img", ["check", unmapImage.path], { timeout: 30_000 });
    const raw = join(dir, "unmap-after.raw");
    await execFileAsync("qemu-img", ["convert", "-O", "raw", unmapImage.path, raw], { timeout: 60_000 });
    await execFileAsync("e2fsck", ["-f", "-n", raw], { timeout: 60_000 });
  });

  it("a guest that cannot come up fails bootGuest with its console's tail, leaving no QEMU", async () => {
    // An empty qcow2: no filesystem, so init's mount of /dev/vda fails and the guest powers off.
    const blank = join(dir, "blank.qcow2");
    await execFileAsync("qemu-img", ["create", "-q", "-f", "qcow2", blank, "64M"], { timeout: 10_000 });
    const error = await bootGuest({ name: "blank", dataImage: blank, artifacts, bootTimeoutMs: 60_000 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/guest blank .*did not come up: init failed: mount \/dev\/vda/);
    expect(error?.message).toContain("--- console, last 40 lines ---");
    expect(error?.message).toContain("RECLAIM-MODULES loaded");
    expect(processesMentioning(blank)).toEqual([]);
  });
});
