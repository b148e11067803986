import { describe, expect, it } from "vitest";
import { listInventory } from "../../../src/inventory/list.js";
import { loadInventory } from "../../../src/inventory/load.js";
import { loadFixture } from "./fixture.js";

describe("listInventory", () => {
  it("has the shape of ansible-inventory --list", () => {
    const inventory = loadFixture("hypervisors.yml");
    const list = listInventory(inventory);
    expect(Object.keys(list)).toEqual(["_meta", "all", "ungrouped", "hypervisors", "lab", "storage"]);
    expect(list.all).toEqual({ children: ["ungrouped", "hypervisors", "storage"] });
    expect(list.ungrouped).toEqual({ hosts: ["localhost"] });
    expect(list.hypervisors).toEqual({ hosts: ["kvm04"], children: ["lab"] });
    expect(list.lab).toEqual({ hosts: ["kvm01", "kvm02", "kvm03"] });
    expect(list.storage).toEqual({ hosts: ["nas01", "kvm04"] });
    expect(list._meta.hostvars.localhost).toEqual({ ansible_user: "admin", backup_dir: "/var/backups" });
    expect(list._meta.hostvars.kvm02).toEqual(inventory.hosts.find((h) => h.name === "kvm02")?.vars);
  });

  it("leaves out hosts without vars and groups without hosts or children, as Ansible does", () => {
    const list = listInventory(loadInventory("l.yml", "lab:\n  hosts:\n    kvm01:\nspare:\n"));
    expect(list).toEqual({
      _meta: { hostvars: {} },
      all: { children: ["ungrouped", "lab", "spare"] },
      lab: { hosts: ["kvm01"] },
    });
  });

  it("survives a round trip through JSON unchanged", () => {
    const list = listInventory(loadFixture("hypervisors.ini"));
    expect(JSON.parse(JSON.stringify(list))).toEqual(list);
  });
});
