import { describe, expect, it } from "vitest";
import type { DiskFacts } from "../../../src/facts/disk.js";
import { decideVm, type LibvirtFacts, startCommandFor } from "../../../src/plan/decide-vm.js";
import type { DomainDisk } from "../../../src/vm/libvirt.js";
import { bloatedDisk, policy } from "../../helpers/facts.js";

type GuestShape = Parameters<typeof decideVm>[0];

const ROOT = "/var/lib/libvirt/images/web01.qcow2";
const DATA = "/var/lib/libvirt/images/web01-data.qcow2";
const LOCK = { message: 'Failed to get shared "write" lock' };

function guest(overrides: Partial<GuestShape> = {}): GuestShape {
  return {
    name: "web01",
    os: "linux",
    ssh: { host: "10.0.0.5" },
    access: "ssh",
    vm: { manager: "auto", libvirtUri: "qemu:///system" },
    policy: { ...policy, shutdown: "graceful", shutdownTimeoutMs: 120_000 },
    ...overrides,
  };
}

const locked = (path: string): DiskFacts => bloatedDisk({ path, inUse: LOCK });
const free = (path: string): DiskFacts => bloatedDisk({ path });
const domain = (
  state: string,
  disks: DomainDisk[] = [{ source: ROOT, kind: "file", discard: "unmap" }],
): LibvirtFacts => ({
  lookup: { kind: "domain", state },
  disks,
});
const libvirtPlan = (state: string, canShutDown: boolean) => ({
  manager: "libvirt",
  state,
  libvirtUri: "qemu:///system",
  timeoutMs: 120_000,
  canShutDown,
  shutdown: false,
});

describe("a guest libvirt knows", () => {
  it("is shut down for the images it holds when it runs and the policy is graceful", () => {
    expect(decideVm(guest(), domain("running"), [locked(ROOT)])).toEqual({
      vm: libvirtPlan("running", true),
      stopsFor: new Set([ROOT]),
      discardReachesImages: true,
      notes: [],
    });
  });

  it("is not shut down for a locked image that is not among its domain's disks", () => {
    const decision = decideVm(guest(), domain("running"), [locked("/images/someone-else.qcow2")]);
    expect(decision.stopsFor).toEqual(new Set());
    expect(decision.vm).toEqual(libvirtPlan("running", false));
    expect(decision.whyRunning).toBeUndefined();
  });

  it("stops only for the images of its domain when the play also names another locked one", () => {
    const decision = decideVm(guest(), domain("running"), [locked(ROOT), locked("/images/other.qcow2")]);
    expect(decision.stopsFor).toEqual(new Set([ROOT]));
    expect(decision.vm?.canShutDown).toBe(true);
  });

  it("is not shut down when none of its images is locked", () => {
    const decision = decideVm(guest(), domain("running"), [free(ROOT)]);
    expect(decision.stopsFor).toEqual(new Set());
    expect(decision.vm?.canShutDown).toBe(false);
  });

  it("keeps running under shutdown: never, and says so for the skip reason", () => {
    const decision = decideVm(guest({ policy: { ...policy, shutdown: "never" } }), domain("running"), [
      locked(ROOT),
    ]);
    expect(decision.stopsFor).toEqual(new Set());
    expect(decision.vm?.canShutDown).toBe(false);
    expect(decision.whyRunning).toBe("shutdown: never keeps the guest running");
  });

  it.each(["paused", "in shutdown", "pmsuspended"])("is not shut down when it is %s", (state) => {
    const decision = decideVm(guest(), domain(state), [locked(ROOT)]);
    expect(decision.stopsFor).toEqual(new Set());
    expect(decision.vm).toEqual(libvirtPlan(state, false));
    expect(decision.whyRunning).toBe(`the guest is ${state}; only a running guest is shut down`);
  });

  it.each(["shut off", "crashed"])("has nothing inside it to trim or fill when it is %s", (state) => {
    expect(decideVm(guest(), domain(state), [free(ROOT)])).toEqual({
      vm: libvirtPlan(state, false),
      stopsFor: new Set(),
      shutOff: `libvirt says the guest is ${state}: nothing runs inside it to trim or fill`,
      discardReachesImages: true,
      notes: [],
    });
  });

  it("lets discards reach the images only when every disk of the domain has discard='unmap'", () => {
    const both: DomainDisk[] = [
      { source: ROOT, kind: "file", discard: "unmap" },
      { source: DATA, kind: "file", discard: "unmap" },
    ];
    expect(
      decideVm(guest(), domain("running", both), [locked(ROOT), locked(DATA)]).discardReachesImages,
    ).toBe(true);
    const oneIgnores: DomainDisk[] = [
      { source: ROOT, kind: "file", discard: "unmap" },
      { source: DATA, kind: "file", discard: "ignore" },
    ];
    expect(
      decideVm(guest(), domain("running", oneIgnores), [locked(ROOT), locked(DATA)]).discardReachesImages,
    ).toBe(false);
    const oneUnset: DomainDisk[] = [
      { source: ROOT, kind: "file", discard: "unmap" },
      { source: DATA, kind: "file" },
    ];
    expect(
      decideVm(guest(), domain("running", oneUnset), [locked(ROOT), locked(DATA)]).discardReachesImages,
    ).toBe(false);
  });

  it("judges discard by the images the play names, not the domain's other disks", () => {
    const disks: DomainDisk[] = [
      { source: ROOT, kind: "file", discard: "unmap" },
      { source: DATA, kind: "file", discard: "ignore" },
    ];
    expect(decideVm(guest(), domain("running", disks), [locked(ROOT)]).discardReachesImages).toBe(true);
  });

  it("is not shut down when it is a transient domain, which would vanish and could not be started again", () => {
    const transient: LibvirtFacts = {
      lookup: { kind: "domain", state: "running", persistent: false },
      disks: [{ source: ROOT, kind: "file", discard: "unmap" }],
    };
    const decision = decideVm(guest(), transient, [locked(ROOT)]);
    expect(decision.stopsFor).toEqual(new Set());
    expect(decision.vm?.canShutDown).toBe(false);
    expect(decision.whyRunning).toMatch(/transient libvirt domain/);
  });

  it("does not claim discards reach images the domain does not list", () => {
    expect(decideVm(guest(), domain("running"), [locked("/images/other.qcow2")]).discardReachesImages).toBe(
      false,
    );
  });

  it("says nothing about discard when libvirt gave no disks", () => {
    const decision = decideVm(guest(), { lookup: { kind: "domain", state: "running" } }, [locked(ROOT)]);
    expect(decision).not.toHaveProperty("discardReachesImages");
    expect(decision.stopsFor).toEqual(new Set());
  });
});

describe("a guest whose play says vm.manager: libvirt, when libvirt cannot tell", () => {
  const libvirtGuest = guest({ vm: { manager: "libvirt", libvirtUri: "qemu:///system" } });

  it.each<[string, LibvirtFacts | undefined, string]>([
    [
      "virsh is missing",
      { lookup: { kind: "no-virsh" } },
      "vm.manager is libvirt but the hypervisor has no virsh",
    ],
    [
      "the domain is unknown",
      { lookup: { kind: "no-domain" } },
      "libvirt (qemu:///system) has no domain named 'web01'",
    ],
    [
      "virsh fails",
      { lookup: { kind: "error", message: "virsh exited with 1: error: access denied" } },
      "cannot ask libvirt about the guest: virsh exited with 1: error: access denied",
    ],
    ["libvirt gave no answer", undefined, "cannot ask libvirt about the guest: no answer"],
  ])("is neither shut down nor started when %s, and a note says why", (_name, libvirt, why) => {
    expect(decideVm(libvirtGuest, libvirt, [locked(ROOT)])).toEqual({
      stopsFor: new Set(),
      whyRunning: why,
      notes: [`${why}; it is not shut down or started`],
    });
  });
});

describe("a guest managed from inside", () => {
  it("falls back to the guest manager under vm.manager: auto when the host has no libvirt", () => {
    expect(decideVm(guest(), { lookup: { kind: "no-virsh" } }, [locked(ROOT)])).toEqual({
      vm: {
        manager: "guest",
        state: "running",
        canShutDown: true,
        shutdown: false,
        timeoutMs: 120_000,
        poweroffCommand: ["poweroff"],
      },
      stopsFor: new Set([ROOT]),
      notes: [],
    });
  });

  it("falls back likewise when libvirt has no such domain, without a note", () => {
    const decision = decideVm(guest(), { lookup: { kind: "no-domain" } }, [locked(ROOT)]);
    expect(decision.vm?.manager).toBe("guest");
    expect(decision.notes).toEqual([]);
  });

  it("notes that libvirt did not answer before managing the guest from inside", () => {
    const decision = decideVm(guest(), { lookup: { kind: "error", message: "virsh timed out" } }, [
      locked(ROOT),
    ]);
    expect(decision.vm?.manager).toBe("guest");
    expect(decision.notes).toEqual([
      "libvirt did not answer (virsh timed out); managed from inside the guest",
    ]);
  });

  it("stops for every locked image the play names, not for free ones", () => {
    const decision = decideVm(guest({ vm: { manager: "guest", libvirtUri: "qemu:///system" } }), undefined, [
      locked(ROOT),
      free(DATA),
      locked("/images/extra.qcow2"),
    ]);
    expect(decision.stopsFor).toEqual(new Set([ROOT, "/images/extra.qcow2"]));
  });

  it("cannot shut down a guest it cannot reach over ssh", () => {
    const noSsh = guest({ vm: { manager: "guest", libvirtUri: "qemu:///system" } });
    delete noSsh.ssh;
    const decision = decideVm(noSsh, undefined, [locked(ROOT)]);
    expect(decision.vm?.canShutDown).toBe(false);
    expect(decision.stopsFor).toEqual(new Set());
    expect(decision.whyRunning).toBe(
      "the guest manager powers a guest off from inside, and this guest has no ssh: settings",
    );
  });

  it("needs no ssh: settings when the guest is reached through its agent", () => {
    const agent = guest({ access: "agent", vm: { manager: "guest", libvirtUri: "qemu:///system" } });
    delete agent.ssh;
    const decision = decideVm(agent, undefined, [locked(ROOT)]);
    expect(decision.vm?.canShutDown).toBe(true);
    expect(decision.stopsFor).toEqual(new Set([ROOT]));
  });

  it("keeps the guest running under shutdown: never", () => {
    const decision = decideVm(guest({ policy: { ...policy, shutdown: "never" } }), undefined, [locked(ROOT)]);
    expect(decision.vm?.canShutDown).toBe(false);
    expect(decision.stopsFor).toEqual(new Set());
    expect(decision.whyRunning).toBe("shutdown: never keeps the guest running");
  });

  it("powers a Windows guest off with shutdown.exe", () => {
    const decision = decideVm(guest({ os: "windows" }), undefined, [locked(ROOT)]);
    expect(decision.vm?.poweroffCommand).toEqual(["shutdown.exe", "/s", "/t", "0"]);
  });

  it("starts the guest again with the play's start_command, its name put in for {guest}", () => {
    const decision = decideVm(
      guest({
        vm: {
          manager: "guest",
          libvirtUri: "qemu:///system",
          startCommand: ["/usr/local/bin/vmctl", "start", "--name={guest}", "{guest}"],
        },
      }),
      undefined,
      [locked(ROOT)],
    );
    expect(decision.vm?.startCommand).toEqual(["/usr/local/bin/vmctl", "start", "--name=web01", "web01"]);
  });

  it("plans nothing for the VM when none of the guest's images is locked", () => {
    expect(
      decideVm(guest({ vm: { manager: "guest", libvirtUri: "qemu:///system" } }), undefined, [free(ROOT)]),
    ).toEqual({ stopsFor: new Set(), notes: [] });
  });
});

describe("the start command", () => {
  it("replaces every {guest} and keeps each argument one argument, whatever the name holds", () => {
    expect(
      startCommandFor(["systemctl", "start", "vm@{guest}.service", "{guest}{guest}"], "a b;$(x)"),
    ).toEqual(["systemctl", "start", "vm@a b;$(x).service", "a b;$(x)a b;$(x)"]);
  });
});

describe("a guest an interrupted run of reclaim shut down", () => {
  const marked = (path: string): DiskFacts => bloatedDisk({ path, stoppedByReclaim: true });

  it("is started again after its disks when libvirt says it is shut off", () => {
    const decision = decideVm(guest(), domain("shut off"), [marked(ROOT)]);
    expect(decision.vm).toMatchObject({
      manager: "libvirt",
      state: "shut off",
      startAfter: true,
      canShutDown: false,
    });
  });

  it("is started again with start_command under the guest manager once its images are free", () => {
    const decision = decideVm(
      guest({
        vm: { manager: "guest", libvirtUri: "qemu:///system", startCommand: ["vmctl", "start", "{guest}"] },
      }),
      undefined,
      [marked(ROOT)],
    );
    expect(decision.vm).toMatchObject({
      manager: "guest",
      state: "off",
      startAfter: true,
      startCommand: ["vmctl", "start", "web01"],
    });
  });

  it("is left alone when it is running again (someone started it)", () => {
    const decision = decideVm(guest(), domain("running"), [
      bloatedDisk({ path: ROOT, inUse: LOCK, stoppedByReclaim: true }),
    ]);
    expect(decision.vm?.startAfter).toBeUndefined();
  });
});

describe("a libvirt that does not answer", () => {
  const silent: LibvirtFacts = {
    lookup: { kind: "error", message: "virsh exited with 1: failed to connect to the hypervisor" },
  };

  it("is mentioned only for a running guest, which is then managed from inside", () => {
    expect(decideVm(guest(), silent, [free(ROOT)]).notes).toEqual([]);
    expect(decideVm(guest(), silent, [locked(ROOT)]).notes).toEqual([
      "libvirt did not answer (virsh exited with 1: failed to connect to the hypervisor); managed from inside the guest",
    ]);
  });
});
