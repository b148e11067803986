import { describe, expect, it } from "vitest";
import type { GuestVmPlan } from "../../../src/plan/plan.js";
import { startVm, stopVm, type VmTarget } from "../../../src/tasks/vm-lifecycle.js";
import type { Transport } from "../../../src/transport/transport.js";
import { fixture } from "../../helpers/results.js";
import { type Reply, scripted } from "../../helpers/transport.js";

const IMAGE = "/images/web01.qcow2";
const FREE: Reply = { stdout: fixture("qemu-img/info-plain.json") };
const LOCKED: Reply = { exitCode: 1, stderr: fixture("qemu-img/info-locked.stderr") };
const state = (word: string): Reply => ({ stdout: `${word}\n\n` });

const SHUTDOWN = "virsh -q -c qemu:///system shutdown -- web01";
const DOMSTATE = "virsh -q -c qemu:///system domstate -- web01";
const START = "virsh -q -c qemu:///system start -- web01";
const PROBE = `qemu-img info --output=json ${IMAGE}`;

const libvirt: GuestVmPlan = {
  manager: "libvirt",
  state: "running",
  canShutDown: true,
  shutdown: true,
  timeoutMs: 5_000,
  libvirtUri: "qemu:///system",
};
const inside: GuestVmPlan = {
  manager: "guest",
  state: "running",
  canShutDown: true,
  shutdown: true,
  timeoutMs: 5_000,
  poweroffCommand: ["poweroff"],
};

function target(plan: GuestVmPlan, hypervisor: Transport, extra: Partial<VmTarget> = {}): VmTarget {
  return { guest: "web01", plan, images: [IMAGE], hypervisor, pollMs: 1, ...extra };
}

describe("shutting down a guest through libvirt", () => {
  it("asks virsh to shut it down, then polls until libvirt says shut off and the image is free", async () => {
    const { transport, ran } = scripted({
      "shutdown --": {},
      "domstate --": [state("running"), state("in shutdown"), state("shut off")],
      "qemu-img info": FREE,
    });
    const outcome = await stopVm(target(libvirt, transport));
    expect(ran).toEqual([SHUTDOWN, DOMSTATE, DOMSTATE, DOMSTATE, PROBE]);
    expect(outcome.ok).toBe(true);
    expect(outcome.message).toMatch(/^shut down in \d+\.\d s$/);
  });

  it("waits for QEMU to let go of the image after libvirt says shut off", async () => {
    const { transport, ran } = scripted({
      "shutdown --": {},
      "domstate --": state("shut off"),
      "qemu-img info": [LOCKED, FREE],
    });
    const outcome = await stopVm(target(libvirt, transport));
    expect(outcome.ok).toBe(true);
    expect(ran).toEqual([SHUTDOWN, DOMSTATE, PROBE, DOMSTATE, PROBE]);
  });

  it("reports a guest that stays running as not shut down after its timeout, and never forces it off", async () => {
    const { transport, ran } = scripted({ "shutdown --": {}, "domstate --": state("running") });
    const started = performance.now();
    const outcome = await stopVm(target(libvirt, transport, { plan: { ...libvirt, timeoutMs: 40 } }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(30);
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toMatch(
      /^did not shut down within \d+\.\d s \(libvirt says running\); not forced off, its images untouched$/,
    );
    expect(ran[0]).toBe(SHUTDOWN);
    expect(new Set(ran.slice(1))).toEqual(new Set([DOMSTATE]));
    expect(ran.some((c) => /destroy|reset|--mode/.test(c))).toBe(false);
  });

  it("reports a failed virsh shutdown and does not wait", async () => {
    const { transport, ran } = scripted({
      "shutdown --": {
        exitCode: 1,
        stderr:
          "error: Failed to shutdown domain 'web01'\nerror: Requested operation is not valid: domain is not running\n",
      },
    });
    expect(await stopVm(target(libvirt, transport))).toEqual({
      ok: false,
      message:
        "virsh shutdown failed: virsh exited with 1: error: Failed to shutdown domain 'web01' / error: Requested operation is not valid: domain is not running",
    });
    expect(ran).toEqual([SHUTDOWN]);
  });

  it("stops waiting when the run is interrupted", async () => {
    const { transport, ran } = scripted({ "shutdown --": {}, "domstate --": state("running") });
    const controller = new AbortController();
    controller.abort();
    const outcome = await stopVm(target(libvirt, transport, { signal: controller.signal }));
    expect(outcome).toEqual({
      ok: false,
      message: "interrupted while waiting for it to shut down; not forced off, its images untouched",
    });
    expect(ran).toEqual([SHUTDOWN]);
  });

  it("uses the play's libvirt connection", async () => {
    const { transport, ran } = scripted({ "domstate --": state("shut off"), "qemu-img info": FREE });
    await stopVm(target({ ...libvirt, libvirtUri: "qemu+ssh://root@kvm02/system" }, transport));
    expect(ran[0]).toBe("virsh -q -c qemu+ssh://root@kvm02/system shutdown -- web01");
  });
});

describe("starting a guest again through libvirt", () => {
  it("runs virsh start when libvirt says the guest is shut off", async () => {
    const { transport, ran } = scripted({ "domstate --": state("shut off"), "start --": {} });
    expect(await startVm(target(libvirt, transport))).toEqual({
      ok: true,
      message: "started again (virsh start)",
    });
    expect(ran).toEqual([DOMSTATE, START]);
  });

  it("leaves a guest that never went down running, and says so", async () => {
    const { transport, ran } = scripted({ "domstate --": state("running"), "start --": {} });
    expect(await startVm(target(libvirt, transport))).toEqual({
      ok: true,
      idle: true,
      message: "still running: it never went down",
    });
    expect(ran).toEqual([DOMSTATE]);
  });

  it.each(["in shutdown", "paused"])("does not start a guest that is %s, and reports it", async (word) => {
    const { transport, ran } = scripted({ "domstate --": state(word), "start --": {} });
    expect(await startVm(target(libvirt, transport))).toEqual({
      ok: false,
      message: `not started: libvirt says it is ${word}; if it goes off, start it with virsh start`,
    });
    expect(ran).toEqual([DOMSTATE]);
  });

  it("reports a failed virsh start", async () => {
    const { transport } = scripted({
      "domstate --": state("shut off"),
      "start --": { exitCode: 1, stderr: "error: Failed to start domain 'web01'\n" },
    });
    expect(await startVm(target(libvirt, transport))).toEqual({
      ok: false,
      message: "virsh start failed: virsh exited with 1: error: Failed to start domain 'web01'",
    });
  });
});

describe("shutting down a guest from inside", () => {
  it("runs the poweroff command in the guest, then polls the image's lock on the host until it is gone", async () => {
    const guest = scripted({ poweroff: {} });
    const host = scripted({ "qemu-img info": [LOCKED, LOCKED, FREE] });
    const outcome = await stopVm(target(inside, host.transport, { guestTransport: guest.transport }));
    expect(guest.ran).toEqual(["poweroff"]);
    expect(host.ran).toEqual([PROBE, PROBE, PROBE]);
    expect(host.ran.some((c) => c.includes("-U"))).toBe(false);
    expect(outcome.ok).toBe(true);
    expect(outcome.message).toMatch(/^shut down in \d+\.\d s$/);
  });

  it("counts a connection that drops under the poweroff as the guest going down", async () => {
    const guest = scripted({ poweroff: { throws: "Connection lost before handshake" } });
    const host = scripted({ "qemu-img info": [LOCKED, FREE] });
    const outcome = await stopVm(target(inside, host.transport, { guestTransport: guest.transport }));
    expect(outcome.ok).toBe(true);
    expect(host.ran).toEqual([PROBE, PROBE]);
  });

  it("waits for every image of the guest to be free", async () => {
    const data = "/images/web01-data.qcow2";
    const guest = scripted({});
    const host = scripted({ [data]: [LOCKED, LOCKED, FREE], "qemu-img info": FREE });
    const outcome = await stopVm(
      target(inside, host.transport, { guestTransport: guest.transport, images: [IMAGE, data] }),
    );
    expect(outcome.ok).toBe(true);
    expect(host.ran.filter((c) => c.endsWith(data))).toHaveLength(3);
    expect(host.ran.filter((c) => c.endsWith(IMAGE))).toHaveLength(3);
  });

  it("powers a Windows guest off with its own command", async () => {
    const guest = scripted({});
    const host = scripted({ "qemu-img info": FREE });
    await stopVm(
      target({ ...inside, poweroffCommand: ["shutdown.exe", "/s", "/t", "0"] }, host.transport, {
        guestTransport: guest.transport,
      }),
    );
    expect(guest.argvs).toEqual([["shutdown.exe", "/s", "/t", "0"]]);
  });

  it("reports a guest that keeps its image locked past the timeout, naming the image", async () => {
    const guest = scripted({});
    const host = scripted({ "qemu-img info": LOCKED });
    const outcome = await stopVm(
      target({ ...inside, timeoutMs: 30 }, host.transport, { guestTransport: guest.transport }),
    );
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toMatch(
      /^did not shut down within \d+\.\d s \(still locked: \/images\/web01\.qcow2\); not forced off, its images untouched; it may still power off later, and would then stay off$/,
    );
    expect(host.ran.every((c) => c === PROBE)).toBe(true);
  });

  it("cannot power a guest off without a connection to it", async () => {
    const host = scripted({});
    expect(await stopVm(target(inside, host.transport))).toEqual({
      ok: false,
      message: "no connection to the guest to power it off from inside",
    });
    expect(host.ran).toEqual([]);
  });
});

describe("starting a guest managed from inside", () => {
  it("runs the start command on the hypervisor as an argv", async () => {
    const host = scripted({ vmctl: {} });
    const plan = { ...inside, startCommand: ["/usr/local/bin/vmctl", "start", "web 01; reboot"] };
    expect(await startVm(target(plan, host.transport))).toEqual({
      ok: true,
      message: "started again (/usr/local/bin/vmctl start web 01; reboot)",
    });
    expect(host.argvs).toEqual([["/usr/local/bin/vmctl", "start", "web 01; reboot"]]);
  });

  it("reports a start command that failed", async () => {
    const host = scripted({ vmctl: { exitCode: 2, stderr: "vmctl: no such guest\n" } });
    expect(
      await startVm(target({ ...inside, startCommand: ["vmctl", "start", "web01"] }, host.transport)),
    ).toEqual({
      ok: false,
      message: "start_command failed: vmctl exited with 2: vmctl: no such guest",
    });
  });

  it("says the guest stays off when the play gives no start command", async () => {
    const host = scripted({});
    expect(await startVm(target(inside, host.transport))).toEqual({
      ok: true,
      message: "left powered off: the play gives no vm.start_command",
    });
    expect(host.ran).toEqual([]);
  });
});
