/**
 * The guest lab under libvirt, on the real path: libvirtd and virtlogd started without systemd,
 * lab guests defined as libvirt domains (direct kernel boot, software emulation, loopback-only SSH),
 * driven with virsh as reclaim's libvirt backend will drive them: domstate, domblklist, domfstrim
 * and guest-exec through the guest agent, an ACPI or agent `virsh shutdown` that releases the
 * image's QEMU lock, `virsh start` with the data still there, a guest that refuses to shut down,
 * and `poweroff` run inside a guest (a libvirt domain and a bootGuest() VM), which powers it off.
 */
import { execFile } from "node:child_process";
import { chmodSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, it } from "vitest";
import { ensureGuestArtifacts, type GuestArtifacts } from "../lab/guest/build.js";
import { allocatedBytes, type DataImage, makeDataImage } from "../lab/guest/data-image.js";
import { defineLabDomain, type LabDomain, type Libvirt, startLibvirt } from "../lab/guest/libvirt.js";
import { bootGuest, type GuestVm, within } from "../lab/guest/vm.js";
import { isAlive, procInfo, sleep } from "../lab/proc.js";
import { Lab } from "../lab/sshd.js";

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

const lab = new Lab();
let libvirt: Libvirt | undefined;
afterAll(async () => {
  console.info(`libvirt lab timings: ${JSON.stringify(timings)}`);
  try {
    await libvirt?.close();
  } finally {
    await lab.close();
  }
}, 180_000);

let artifacts: GuestArtifacts;
let images: Record<"main" | "refusing" | "inside" | "vm", DataImage>;
let main: LabDomain;
let refusing: LabDomain;
let inside: LabDomain;
let vm: GuestVm;
const timings: Record<string, number> = {};

beforeAll(async () => {
  artifacts = await ensureGuestArtifacts();
  const dir = lab.tempDir("reclaim-libvirt-lab-");
  // QEMU runs as libvirt-qemu: it must get through the directory to the images.
  chmodSync(dir, 0o755);
  const shape = { sizeMiB: 256, fillMiB: 96, deleteMiB: 64 };
  const [m, r, i, v] = await Promise.all(
    ["main", "refusing", "inside", "vm"].map((n) => makeDataImage(join(dir, `${n}.qcow2`), shape)),
  );
  images = { main: m as DataImage, refusing: r as DataImage, inside: i as DataImage, vm: v as DataImage };
  libvirt = await startLibvirt();
  timings.libvirtReadyMs = Math.round(libvirt.readyMs);
  const lv = libvirt;
  const key = lab.key("id_libvirt_lab");
  const common = { artifacts, authorizedKey: key.publicKey, identityFile: key.privateKey, memoryMiB: 384 };
  const t0 = performance.now();
  // Four guests boot in parallel: three libvirt domains and one bootGuest() VM.
  [main, refusing, inside, vm] = await Promise.all([
    defineLabDomain(lv, { ...common, name: "main", dataImage: images.main.path }),
    defineLabDomain(lv, {
      ...common,
      name: "refusing",
      dataImage: images.refusing.path,
      refuseShutdown: true,
    }),
    defineLabDomain(lv, { ...common, name: "inside", dataImage: images.inside.path, agent: false }),
    bootGuest({ ...common, name: "inside-vm", dataImage: images.vm.path, lab }),
  ]);
  timings.parallelBootMs = Math.round(performance.now() - t0);
  timings.bootMainMs = Math.round(main.bootMs);
  timings.bootVmMs = Math.round(vm.bootMs);
}, 300_000);

async function virsh(args: string[], timeoutMs?: number): Promise<string> {
  const r = await (libvirt as Libvirt).virsh(args, timeoutMs);
  if (r.code !== 0) throw new Error(`virsh ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function inGuest(guest: { ssh: LabDomain["ssh"]; name: string }, command: string): Promise<string> {
  const r = await guest.ssh(command);
  if (r.code !== 0)
    throw new Error(`${guest.name}: \`${command}\` exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs `qemu-img info` without -U: it fails while a QEMU holds the image's lock. */
async function imageUnlocked(path: string): Promise<boolean> {
  return execFileAsync("qemu-img", ["info", path], { timeout: 30_000 }).then(
    () => true,
    () => false,
  );
}

function uidOf(name: string): number {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  return Number(line?.split(":")[2]);
}

/** Polls guest-exec-status for `pid` until the command has exited (bounded). */
async function agentExecStatus(domain: string, pid: number) {
  for (let i = 0; i < 100; i++) {
    const out = await virsh([
      "qemu-agent-command",
      domain,
      JSON.stringify({ execute: "guest-exec-status", arguments: { pid } }),
    ]);
    const status = (
      JSON.parse(out) as { return: { exited: boolean; exitcode?: number; "out-data"?: string } }
    ).return;
    if (status.exited) return status;
    await sleep(100);
  }
  throw new Error(`guest-exec ${pid} in ${domain} did not exit`);
}

describe.concurrent("libvirt in the guest lab (software emulation, no systemd)", { timeout: 120_000 }, () => {
  describe.sequential("a domain with the guest agent, through its whole life", () => {
    let keepSha256 = "";
    let firstHostKey = "";

    it("boots to SSH; virsh says it is running with the image on vda, discard passed through", async ({
      expect,
    }) => {
      for (const d of [main, refusing, inside]) {
        expect(await d.state()).toBe("running");
        expect(readFileSync(d.knownHostsFile, "utf8")).toBe(`[127.0.0.1]:${d.sshPort} ${d.hostKey}\n`);
        expect((await inGuest(d, "id -u; hostname")).split("\n").slice(0, 2)).toEqual(["0", "reclaim-guest"]);
      }
      expect(new Set([main, refusing, inside].map((d) => d.sshPort)).size).toBe(3);
      const blk = await virsh(["domblklist", main.name]);
      expect(blk).toMatch(new RegExp(`^\\s*vda\\s+${images.main.path.replace(/[.]/g, "\\.")}\\s*$`, "m"));
      const xml = await virsh(["dumpxml", main.name]);
      expect(xml).toContain("discard='unmap'");
      expect(xml).toContain("org.qemu.guest_agent.0");
      // QEMU runs as libvirt-qemu, and libvirt gave it the image for as long as it runs.
      const pid = main.qemuPid();
      expect(pid).toBeDefined();
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
      expect(uid).toBe(uidOf("libvirt-qemu"));
      expect(statSync(images.main.path).uid).toBe(uid);
      firstHostKey = main.hostKey;
    });

    it("virsh domfstrim trims /data through the agent and the image's allocation drops", async ({
      expect,
    }) => {
      // A file written, synced and deleted (sync again, or the freed blocks are not trimmed yet),
      // plus what makeDataImage deleted; and one file kept for the restart below.
      const out = await inGuest(
        main,
        "dd if=/dev/urandom of=/data/scratch.bin bs=1M count=32 2>/dev/null && " +
          "dd if=/dev/urandom of=/data/keep-across-restart.bin bs=1M count=8 2>/dev/null && sync && " +
          "rm /data/scratch.bin && sync && sha256sum /data/keep-across-restart.bin",
      );
      keepSha256 = out.split(/\s+/)[0] ?? "";
      expect(keepSha256).toMatch(/^[0-9a-f]{64}$/);
      const before = allocatedBytes(images.main.path);
      const t0 = performance.now();
      await virsh(["domfstrim", main.name]);
      timings.domfstrimMs = Math.round(performance.now() - t0);
      const after = allocatedBytes(images.main.path);
      timings.mainAllocatedMiB = Math.round(before / MiB);
      timings.mainAfterTrimMiB = Math.round(after / MiB);
      // ext4 put the new files partly where makeDataImage's deleted ones were; whatever the mix, at
      // least the scratch file's clusters go, and what stays is about the files still there.
      expect(before - after).toBeGreaterThanOrEqual(0.9 * 32 * MiB);
      expect(after).toBeLessThan(images.main.keptBytes + 8 * MiB + 16 * MiB);
      expect(await main.state()).toBe("running");
    });

    it("guest-exec through virsh qemu-agent-command runs a command in the guest", async ({ expect }) => {
      const started = await virsh([
        "qemu-agent-command",
        main.name,
        JSON.stringify({
          execute: "guest-exec",
          arguments: { path: "/bin/sh", arg: ["-c", "echo from-agent; hostname"], "capture-output": true },
        }),
      ]);
      const pid = (JSON.parse(started) as { return: { pid: number } }).return.pid;
      expect(pid).toBeGreaterThan(0);
      const status = await agentExecStatus(main.name, pid);
      expect(status.exitcode).toBe(0);
      expect(Buffer.from(status["out-data"] ?? "", "base64").toString()).toBe("from-agent\nreclaim-guest\n");
    });

    it("virsh shutdown gets it to shut off, and QEMU releases the image's lock", async ({ expect }) => {
      const qemu = procInfo(main.qemuPid() ?? 0);
      expect(qemu).toBeDefined();
      expect(await imageUnlocked(images.main.path)).toBe(false);
      const t0 = performance.now();
      await virsh(["shutdown", main.name]);
      expect(await main.waitForState("shut off", 30_000)).toBe(true);
      timings.shutdownMs = Math.round(performance.now() - t0);
      if (qemu) expect(isAlive(qemu)).toBe(false);
      expect(main.consoleLog()).toMatch(/^RECLAIM-POWEROFF data unmounted/m);
      expect(await imageUnlocked(images.main.path)).toBe(true);
      await execFileAsync("qemu-img", ["check", images.main.path], { timeout: 30_000 });
      // libvirt gave the image back to its owner.
      expect(statSync(images.main.path).uid).toBe(0);
    });

    it("virsh start brings it back to SSH, with a new host key and the file written before", async ({
      expect,
    }) => {
      const t0 = performance.now();
      // Started the way reclaim will start it; the lab only waits for the new boot.
      await virsh(["start", main.name], 120_000);
      await main.waitForSsh();
      timings.restartMs = Math.round(performance.now() - t0);
      expect(await main.state()).toBe("running");
      expect(main.hostKey).not.toBe(firstHostKey);
      const sum = await inGuest(main, "sha256sum /data/keep-across-restart.bin");
      expect(sum.split(/\s+/)[0]).toBe(keepSha256);
      const survivor = await inGuest(main, `sha256sum ${images.main.survivorPath}`);
      expect(survivor.split(/\s+/)[0]).toBe(images.main.survivorSha256);
    });

    it("the ACPI power button alone (virsh shutdown --mode acpi) powers it off too", async ({ expect }) => {
      const t0 = performance.now();
      await virsh(["shutdown", "--mode", "acpi", main.name]);
      expect(await main.waitForState("shut off", 30_000)).toBe(true);
      timings.acpiShutdownMs = Math.round(performance.now() - t0);
      expect(main.consoleLog()).toMatch(/^acpid: power-button/m);
      expect(await imageUnlocked(images.main.path)).toBe(true);
    });
  });

  it("a domain booted with refuseShutdown stays running after virsh shutdown", async ({ expect }) => {
    await virsh(["shutdown", refusing.name]);
    // Polled for about 10 s: neither the agent's guest-shutdown nor the power button gets through.
    const deadline = Date.now() + 10_000;
    for (let i = 0; i < 100 && Date.now() < deadline; i++) {
      expect(await refusing.state()).toBe("running");
      await sleep(500);
    }
    expect(await inGuest(refusing, "echo still here")).toBe("still here\n");
    expect(refusing.consoleLog()).toMatch(/^RECLAIM-ACPI ignored \(reclaim\.noacpi\)/m);
    expect(refusing.consoleLog()).not.toMatch(/RECLAIM-POWEROFF/);
    expect(await imageUnlocked(images.refusing.path)).toBe(false);
  });

  it("poweroff run over ssh inside a libvirt domain powers it off cleanly", async ({ expect }) => {
    const t0 = performance.now();
    // The session ends with the guest: its exit status does not matter.
    await inside.ssh("poweroff", 15_000);
    expect(await inside.waitForState("shut off", 30_000)).toBe(true);
    timings.poweroffDomainMs = Math.round(performance.now() - t0);
    expect(inside.consoleLog()).toMatch(/^RECLAIM-POWEROFF requested \(poweroff\)/m);
    expect(inside.consoleLog()).toMatch(/^RECLAIM-POWEROFF data unmounted/m);
    expect(await imageUnlocked(images.inside.path)).toBe(true);
  });

  it("poweroff run over ssh inside a bootGuest() VM powers it off and its QEMU exits", async ({ expect }) => {
    const t0 = performance.now();
    await vm.ssh("poweroff", 15_000);
    expect(await within(vm.exited, 30_000)).toBe(true);
    timings.poweroffVmMs = Math.round(performance.now() - t0);
    expect(vm.alive()).toBe(false);
    expect(vm.consoleLog()).toMatch(/^RECLAIM-POWEROFF data unmounted/m);
    expect(vm.consoleLog()).toMatch(/reboot: Power down/);
    expect(await imageUnlocked(images.vm.path)).toBe(true);
    await vm.kill();
  });
});
