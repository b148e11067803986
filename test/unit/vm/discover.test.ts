import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GuestDiscovery } from "../../../src/config/model.js";
import { DEFAULT_VM } from "../../../src/config/playbook.js";
import { createLocalTransport } from "../../../src/transport/local.js";
import { discoverGuests, takesDomain } from "../../../src/vm/discover.js";
import { policy } from "../../helpers/facts.js";

const discovery = (include: string[] = [], exclude: string[] = []): GuestDiscovery => ({
  kind: "libvirt",
  include,
  exclude,
  os: "linux",
  access: "agent",
  vm: DEFAULT_VM,
  source: { file: "pb.yml", line: 4, column: 5 },
});

/** A stand-in `virsh` first on PATH: four domains, one with only a block device and a CD-ROM. */
const FAKE_VIRSH = `#!/bin/sh
# virsh -q -c URI list --all --name | virsh -q -c URI dumpxml -- NAME
case "$4" in
  list) printf 'web01\\nweb02\\ndb-main\\nappliance\\n' ;;
  dumpxml)
    case "$6" in
      web01) cat <<'EOF'
<domain type='kvm'>
  <name>web01</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/isos/debian.iso'/>
    </disk>
  </devices>
</domain>
EOF
      ;;
      appliance) cat <<'EOF'
<domain type='kvm'><devices><disk type='block' device='disk'><source dev='/dev/vg0/appliance'/></disk></devices></domain>
EOF
      ;;
      *) echo "error: failed to get domain '$6'" >&2; exit 1 ;;
    esac ;;
esac
`;

let dir: string;
let savedPath: string | undefined;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "reclaim-virsh-"));
  writeFileSync(join(dir, "virsh"), FAKE_VIRSH);
  chmodSync(join(dir, "virsh"), 0o755);
  savedPath = process.env.PATH;
  process.env.PATH = `${dir}:${process.env.PATH}`;
});
afterAll(() => {
  process.env.PATH = savedPath;
  rmSync(dir, { recursive: true, force: true });
});

describe("discovering a play's guests in libvirt", () => {
  it("takes every domain without include, and leaves out what exclude matches", () => {
    expect(["web01", "db-main"].filter((n) => takesDomain(discovery(), n))).toEqual(["web01", "db-main"]);
    expect(
      ["web01", "web02", "db-main"].filter((n) => takesDomain(discovery(["web*"], ["web02"]), n)),
    ).toEqual(["web01"]);
  });

  it("makes a guest of each taken domain with its image files, leaving out CD-ROMs and block devices", async () => {
    const found = await discoverGuests(createLocalTransport(), discovery(["web01", "appliance"]), policy);
    expect(found.guests).toEqual([
      {
        name: "web01",
        os: "linux",
        access: "agent",
        vm: DEFAULT_VM,
        disks: [{ path: "/var/lib/libvirt/images/web01.qcow2", source: discovery().source }],
        policy,
        source: discovery().source,
      },
    ]);
    expect(found.notes).toEqual(["domain appliance: no image files among its disks; left out"]);
  });

  it("says so when a domain's definition cannot be read", async () => {
    const found = await discoverGuests(createLocalTransport(), discovery(["web02"]), policy);
    expect(found.guests).toEqual([]);
    expect(found.notes).toEqual(["domain web02: its definition could not be read"]);
  });
});
