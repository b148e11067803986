import { describe, expect, it } from "vitest";
import {
  domainState,
  domainXml,
  gatherLibvirtFacts,
  isActive,
  parseDomainDisks,
  virshArgv,
} from "../../../src/vm/libvirt.js";
import { result } from "../../helpers/results.js";
import { scripted } from "../../helpers/transport.js";

const args = { uri: "qemu:///system", name: "web01" };

/** `virsh dumpxml` of a running domain, as libvirt 9 prints it (trimmed to what matters here). */
const XML = `<domain type='kvm' id='3'>
  <name>web01</name>
  <uuid>5f1a0c2e-8d4b-4a7e-9b53-2f0f6f1d9c11</uuid>
  <memory unit='KiB'>2097152</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap' detect_zeroes='unmap'/>
      <source file='/var/lib/libvirt/images/web01.qcow2' index='3'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/>
      <source dev='/dev/vg0/web01-data' index='2'/>
      <backingStore/>
      <target dev='vdb' bus='virtio'/>
      <alias name='virtio-disk1'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/boot/debian-12.iso' index='1'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/srv/images/logs&amp;spool &apos;old&apos;.qcow2' index='4'/>
      <backingStore/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`;

describe("libvirt's state of a domain", () => {
  it.each([
    ["running\n\n", "running"],
    ["shut off\n\n", "shut off"],
    ["in shutdown\n", "in shutdown"],
    ["paused\n", "paused"],
  ])("reads %j as the state %j", (stdout, state) => {
    expect(domainState.parse(result(stdout), args)).toEqual({ kind: "domain", state });
  });

  it("calls an empty answer an error rather than a state", () => {
    expect(domainState.parse(result("\n"), args)).toEqual({
      kind: "error",
      message: "virsh domstate printed nothing",
    });
  });

  it("says virsh is missing when the command is not found", () => {
    expect(domainState.parse(result("", 127, "sh: 1: exec: virsh: not found\n"), args)).toEqual({
      kind: "no-virsh",
    });
  });

  it("says libvirt has no such domain", () => {
    const answer = result("", 1, "error: failed to get domain 'web01'\n");
    expect(domainState.parse(answer, args)).toEqual({ kind: "no-domain" });
    expect(domainXml.parse(answer, args)).toEqual({ kind: "no-domain" });
  });

  it("reports any other failure as an error with virsh's own words", () => {
    const answer = result("", 1, "error: authentication failed: access denied\n");
    expect(domainState.parse(answer, args)).toEqual({
      kind: "error",
      message: "test exited with 1: error: authentication failed: access denied",
    });
  });

  it("counts shut off and crashed guests as inactive, every other state as holding its images", () => {
    expect(["running", "idle", "paused", "in shutdown", "pmsuspended"].map(isActive)).toEqual([
      true,
      true,
      true,
      true,
      true,
    ]);
    expect(["shut off", "crashed"].map(isActive)).toEqual([false, false]);
  });
});

describe("a domain's disks", () => {
  it("lists file and block disks with their discard setting, skipping the cdrom", () => {
    expect(parseDomainDisks(XML)).toEqual([
      { source: "/var/lib/libvirt/images/web01.qcow2", kind: "file", discard: "unmap" },
      { source: "/dev/vg0/web01-data", kind: "block", discard: "unmap" },
      { source: "/srv/images/logs&spool 'old'.qcow2", kind: "file" },
    ]);
  });

  it("does not take detect_zeroes='unmap' for discard", () => {
    const [disk] = parseDomainDisks(
      `<disk type='file' device='disk'><driver name='qemu' type='qcow2' detect_zeroes='unmap'/><source file='/i.qcow2'/></disk>`,
    );
    expect(disk).toEqual({ source: "/i.qcow2", kind: "file" });
  });

  it("unescapes each entity once, so an escaped ampersand before a name stays literal", () => {
    const [disk] = parseDomainDisks(
      `<disk type="file" device="disk"><source file="/a/&amp;lt;b&amp;gt;.qcow2"/></disk>`,
    );
    expect(disk?.source).toBe("/a/&lt;b&gt;.qcow2");
  });

  it("skips a disk with no file or device source (a network disk)", () => {
    expect(
      parseDomainDisks(
        `<disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='pool/img'><host name='mon1' port='6789'/></source></disk>`,
      ),
    ).toEqual([]);
  });

  it("passes virsh's failure through instead of an empty list", () => {
    expect(domainXml.parse(result("", 127, "virsh: command not found"), args)).toEqual({
      kind: "no-virsh",
    });
  });
});

describe("the virsh command line", () => {
  it("ends options with -- before the domain's name", () => {
    expect(virshArgv("qemu:///system", "domstate", "web01")).toEqual([
      "virsh",
      "-q",
      "-c",
      "qemu:///system",
      "domstate",
      "--",
      "web01",
    ]);
  });

  it("never reads a name starting with a dash as an option", () => {
    const argv = virshArgv("qemu:///system", "shutdown", "--mode=acpi", "--wait");
    expect(argv.slice(-4)).toEqual(["shutdown", "--wait", "--", "--mode=acpi"]);
    expect(domainState.argv({ uri: "qemu:///session", name: "-c" })).toEqual([
      "virsh",
      "-q",
      "-c",
      "qemu:///session",
      "domstate",
      "--",
      "-c",
    ]);
    expect(domainXml.argv(args).slice(4)).toEqual(["dumpxml", "--", "web01"]);
  });
});

describe("asking libvirt about a host's guests", () => {
  it("lists the domains once, then asks about only the known ones in one round trip", async () => {
    const { transport, ran } = scripted({
      "list --all --name": { stdout: "web01\nother\ndb01\n" },
      "dominfo -- web01": {
        stdout:
          "Id:             3\nName:           web01\nState:          running\nPersistent:     yes\nAutostart:      disable\n",
      },
      "dumpxml -- web01": { stdout: XML },
      "dominfo -- db01": {
        stdout: "Id:             -\nName:           db01\nState:          shut off\nPersistent:     no\n",
      },
      "dumpxml -- db01": {
        stdout: `<domain><devices><disk type='file' device='disk'><source file='/images/db01.qcow2'/></disk></devices></domain>`,
      },
      "-- ghost": { exitCode: 1, stderr: "error: failed to get domain 'ghost'\n" },
    });
    let runs = 0;
    const counting = {
      ...transport,
      run: (spec: Parameters<typeof transport.run>[0]) => {
        runs += 1;
        return transport.run(spec);
      },
    };
    const facts = await gatherLibvirtFacts(counting, [
      { uri: "qemu:///system", name: "web01" },
      { uri: "qemu:///system", name: "ghost" },
      { uri: "qemu:///system", name: "db01" },
    ]);
    expect(runs).toBe(2);
    expect(ran).toEqual([
      "virsh -q -c qemu:///system list --all --name",
      "virsh -q -c qemu:///system dominfo -- web01",
      "virsh -q -c qemu:///system dumpxml -- web01",
      "virsh -q -c qemu:///system dominfo -- db01",
      "virsh -q -c qemu:///system dumpxml -- db01",
    ]);
    expect(facts).toEqual([
      { lookup: { kind: "domain", state: "running", persistent: true }, disks: parseDomainDisks(XML) },
      { lookup: { kind: "no-domain" } },
      {
        lookup: { kind: "domain", state: "shut off", persistent: false },
        disks: [{ source: "/images/db01.qcow2", kind: "file" }],
      },
    ]);
  });

  it("reports a host without virsh for each domain, after one command", async () => {
    const { transport, ran } = scripted({
      virsh: { exitCode: 127, stderr: "sh: 1: exec: virsh: not found\n" },
    });
    const many = ["a", "b", "c"].map((name) => ({ ...args, name }));
    expect(await gatherLibvirtFacts(transport, many)).toEqual(
      many.map(() => ({ lookup: { kind: "no-virsh" } })),
    );
    expect(ran).toHaveLength(1);
  });

  it("reports a libvirt that does not answer for each domain, with its message", async () => {
    const { transport } = scripted({
      "list --all --name": { exitCode: 1, stderr: "error: failed to connect to the hypervisor\n" },
    });
    const [fact] = await gatherLibvirtFacts(transport, [args]);
    expect(fact?.lookup).toMatchObject({
      kind: "error",
      message: expect.stringMatching(/failed to connect/),
    });
  });

  it("runs nothing when there is no domain to ask about", async () => {
    const { transport, ran } = scripted({});
    expect(await gatherLibvirtFacts(transport, [])).toEqual([]);
    expect(ran).toEqual([]);
  });
});
