import { describe, expect, it } from "vitest";
import { connectionOf } from "../../../src/inventory/connection.js";
import { loadInventory } from "../../../src/inventory/load.js";
import type { Inventory } from "../../../src/inventory/model.js";
import { loadFixture, problems } from "./fixture.js";

function host(inventory: Inventory, name: string) {
  const found = inventory.hosts.find((h) => h.name === name);
  if (!found) throw new Error(`no host ${name}`);
  return found;
}

describe("variable precedence", () => {
  const inventory = loadFixture("hypervisors.yml");

  it("lets a parent group override all, and a child group override its parent", () => {
    expect(host(inventory, "localhost").vars.ansible_user).toBe("admin");
    expect(host(inventory, "kvm04").vars.ansible_user).toBe("reclaim");
    expect(host(inventory, "kvm01").vars.images_dir).toBe("/srv/lab/images");
  });

  it("lets the group later in the alphabet win between groups at the same depth", () => {
    // kvm04 is in hypervisors and in storage, both right under all: storage sorts last.
    expect(host(inventory, "kvm04").vars.images_dir).toBe("/srv/nas/images");
  });

  it("lets a host's own vars override every group", () => {
    const text =
      "all:\n  vars: {x: all}\n  children:\n    g:\n      vars: {x: group}\n      hosts:\n        h1: {x: host}\n        h2:\n";
    const inv = loadInventory("p.yml", text);
    expect([host(inv, "h1").vars.x, host(inv, "h2").vars.x]).toEqual(["host", "group"]);
  });

  it("ranks a group by its longest way down from all, so a deeper group wins over a shallower one", () => {
    // deep is at depth 3 (all > a > b > deep) even though c also holds it at depth 2.
    const text = [
      "[a:children]",
      "b",
      "[b:children]",
      "deep",
      "[c:children]",
      "deep",
      "[zz]",
      "h",
      "[deep]",
      "h",
      "[zz:vars]",
      "x=zz",
      "[deep:vars]",
      "x=deep",
    ].join("\n");
    expect(host(loadInventory("p.ini", text), "h").vars.x).toBe("deep");
  });

  it("merges a host written in several places, the later place winning", () => {
    const inv = loadInventory("p.ini", "[a]\nh x=1 y=1\n[b]\nh y=2\n");
    expect(host(inv, "h").vars).toEqual({ x: 1, y: 2 });
  });
});

describe("membership", () => {
  const inventory = loadFixture("hypervisors.yml");

  it("puts a host in every group above its own, all included, in inventory order", () => {
    expect(host(inventory, "kvm01").groups).toEqual(["all", "hypervisors", "lab"]);
    expect(host(inventory, "kvm04").groups).toEqual(["all", "hypervisors", "storage"]);
  });

  it("puts a host that is in no group but all into ungrouped, as Ansible does", () => {
    expect(host(inventory, "localhost").groups).toEqual(["all", "ungrouped"]);
    expect(inventory.groups.find((g) => g.name === "ungrouped")?.hosts).toEqual(["localhost"]);
  });

  it("takes a host written under ungrouped out of it when it is in another group too", () => {
    const inv = loadInventory("u.yml", "ungrouped:\n  hosts: {h1: , h2: }\nlab:\n  hosts: {h1: }\n");
    expect(inv.groups.find((g) => g.name === "ungrouped")?.hosts).toEqual(["h2"]);
    expect(host(inv, "h1").groups).toEqual(["all", "lab"]);
  });

  it("puts groups without a parent under all, after ungrouped", () => {
    const inv = loadInventory("t.yml", "lab:\n  hosts: {kvm01: }\nstorage:\n");
    expect(inv.groups.find((g) => g.name === "all")?.children).toEqual(["ungrouped", "lab", "storage"]);
  });

  it("treats a child group that is never defined as an empty group", () => {
    const inv = loadInventory("t.yml", "all:\n  children:\n    lab:\n");
    expect(inv.groups.find((g) => g.name === "lab")).toEqual({
      name: "lab",
      hosts: [],
      children: [],
      vars: {},
    });
  });

  it("refuses all as a child group", () => {
    expect(problems("t.ini", "[lab:children]\nall\n")).toEqual([
      "2:1 'all' holds every group and cannot be a child of 'lab'",
    ]);
  });
});

describe("connection", () => {
  it("connects to a host named localhost locally unless it says otherwise", () => {
    expect(connectionOf("localhost", {})).toEqual({ kind: "local" });
    expect(connectionOf("localhost", { ansible_connection: "ssh" })).toEqual({
      kind: "ssh",
      address: "localhost",
    });
  });

  it("connects locally to any host with ansible_connection: local", () => {
    expect(connectionOf("kvm01", { ansible_connection: "local", ansible_host: "10.0.0.1" })).toEqual({
      kind: "local",
    });
  });

  it("reaches other hosts over SSH at ansible_host, ansible_port (a number or digits) and as ansible_user", () => {
    expect(
      connectionOf("kvm01", {
        ansible_connection: "smart",
        ansible_host: "127.0.0.2",
        ansible_port: "2222",
        ansible_user: "reclaim",
        ansible_ssh_private_key_file: "~/.ssh/lab",
      }),
    ).toEqual({
      kind: "ssh",
      address: "127.0.0.2",
      port: 2222,
      user: "reclaim",
      privateKeyFile: "~/.ssh/lab",
    });
    expect(connectionOf("kvm01", {})).toEqual({ kind: "ssh", address: "kvm01" });
  });

  it("reads ansible_become as Ansible does: true, yes, on in any of the usual cases", () => {
    const become = (value: string) => loadInventory("b.ini", `h ansible_become=${value}`).hosts[0]?.become;
    expect(["True", "yes", "Yes", "ON", "no", "False", "off"].map(become)).toEqual([
      true,
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
  });
});
