import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../../src/config/diagnostic.js";
import { readPlaybook } from "../../../src/config/playbook.js";
import { checkInventoryReferences } from "../../../src/config/references.js";
import { loadInventory } from "../../../src/inventory/load.js";

const inventory = loadInventory(
  "inv.yml",
  "all:\n  children:\n    hypervisors:\n      hosts:\n        kvm01:\n        kvm02:\n    backup:\n      hosts:\n        bak01:\n",
);

function check(text: string): string[] {
  const read = readPlaybook("pb.yml", text);
  if (!read.playbook) throw new Error("unreadable");
  return checkInventoryReferences(read.playbook, inventory).map(formatDiagnostic);
}

describe("checking a playbook against the inventory", () => {
  it("points a pattern that matches nothing at the play's hosts value", () => {
    expect(check("- name: p\n  hosts: hypervisers\n  guests: [{ name: a, disks: [/a.qcow2] }]\n")).toEqual([
      "pb.yml:2:10: hosts: pattern 'hypervisers' matches no host or group in inv.yml",
    ]);
  });

  it("refuses a guest pinned to a host the play does not select", () => {
    expect(
      check(
        "- name: p\n  hosts: hypervisors\n  guests:\n    - name: a\n      host: bak01\n      disks: [/a.qcow2]\n",
      ),
    ).toEqual([
      "pb.yml:5:13: host: 'bak01' is not among the hosts the play's pattern 'hypervisors' selects (kvm01, kvm02)",
    ]);
  });

  it("refuses a guest pinned to a host the inventory does not have", () => {
    expect(
      check(
        "- name: p\n  hosts: all\n  guests:\n    - name: a\n      host: kvm09\n      disks: [/a.qcow2]\n",
      ),
    ).toEqual(["pb.yml:5:13: host: no host 'kvm09' in inv.yml"]);
  });

  it("still checks references in a playbook that has other problems", () => {
    const read = readPlaybook(
      "pb.yml",
      "- name: p\n  hosts: nowhere\n  policy: { zero: sometimes }\n  guests: [{ name: a, disks: [/a.qcow2] }]\n",
    );
    expect(read.diagnostics).toHaveLength(1);
    expect(read.playbook && checkInventoryReferences(read.playbook, inventory)).toHaveLength(1);
  });

  it("says nothing when every reference resolves", () => {
    expect(
      check("- name: p\n  hosts: hypervisors\n  guests: [{ name: a, host: kvm02, disks: [/a.qcow2] }]\n"),
    ).toEqual([]);
  });
});
