import { describe, expect, it } from "vitest";
import { readIniInventory } from "../../../src/inventory/ini.js";
import { iniValue, splitWords, withoutComment } from "../../../src/inventory/ini-words.js";
import { loadInventory } from "../../../src/inventory/load.js";
import { problems } from "./fixture.js";

describe("splitWords", () => {
  it("splits at whitespace, removes quotes and escapes, and stops at a #", () => {
    expect(splitWords(`kvm01 a="x y" b='p#q' c=d\\ e # note`)).toEqual({
      words: [
        { text: "kvm01", column: 1 },
        { text: "a=x y", column: 7 },
        { text: "b=p#q", column: 15 },
        { text: "c=d e", column: 23 },
      ],
    });
  });

  it("ends a word at a # inside it, as Python's shlex does", () => {
    expect(splitWords("kvm01#old")).toEqual({ words: [{ text: "kvm01", column: 1 }] });
  });

  it("points at an unterminated quote", () => {
    expect(splitWords(`kvm01 a="x`, 4)).toEqual({ error: 'unterminated " quote', column: 13 });
  });
});

describe("withoutComment", () => {
  it("drops a # comment that follows whitespace, outside quotes only", () => {
    expect(withoutComment("a=1   # one")).toBe("a=1");
    expect(withoutComment("a=x#y")).toBe("a=x#y");
    expect(withoutComment(`a="x # y"`)).toBe(`a="x # y"`);
  });
});

describe("iniValue", () => {
  it("reads numbers, True, False and None as Python literals, and everything else as text", () => {
    expect([
      iniValue("22", false),
      iniValue("-1.5", false),
      iniValue("True", false),
      iniValue("None", false),
    ]).toEqual([22, -1.5, true, null]);
    expect([
      iniValue("yes", false),
      iniValue("true", false),
      iniValue("0755", false),
      iniValue("[1]", false),
    ]).toEqual(["yes", "true", "0755", "[1]"]);
  });

  it("removes the quotes around a quoted value, leaving it text", () => {
    expect([iniValue(`"22"`, false), iniValue(`'a b'`, false)]).toEqual(["22", "a b"]);
  });

  it("keeps a value text when the variable must be text", () => {
    expect(iniValue("1000", true)).toBe("1000");
  });
});

describe("readIniInventory", () => {
  it("puts hosts above the first section directly under all", () => {
    const { raw } = readIniInventory("hosts", "localhost\n[lab]\nkvm01\n");
    expect(raw.groups.map((g) => [g.name, g.hosts.map((h) => h.name)])).toEqual([
      ["all", ["localhost"]],
      ["lab", ["kvm01"]],
    ]);
  });

  it("expands a host range on a host line, giving every host the line's vars", () => {
    const inventory = loadInventory("hosts.ini", "[lab]\nkvm[01:03] ansible_user=reclaim\n");
    expect(inventory.hosts.map((h) => [h.name, h.vars])).toEqual([
      ["kvm01", { ansible_user: "reclaim" }],
      ["kvm02", { ansible_user: "reclaim" }],
      ["kvm03", { ansible_user: "reclaim" }],
    ]);
  });

  it("takes host:port as ansible_port, which a later ansible_port on the line overrides", () => {
    const inventory = loadInventory("hosts.ini", "kvm01:2222\nkvm02:2222 ansible_port=22\n");
    expect(inventory.hosts.map((h) => h.vars.ansible_port)).toEqual([2222, 22]);
  });

  it("keeps a numeric user name text, and types other values as Ansible does", () => {
    const inventory = loadInventory(
      "hosts.ini",
      "kvm01 ansible_user=1000 ansible_port=22 disks=2 fast=True\n",
    );
    expect(inventory.hosts[0]?.vars).toEqual({
      ansible_user: "1000",
      ansible_port: 22,
      disks: 2,
      fast: true,
    });
  });

  it("skips blank lines and # or ; comments, and ignores comments after a value", () => {
    const text = "# hosts\n; more\n\n[lab]\n  kvm01   # the first\n[lab:vars]\nimages=/srv # where\n";
    const inventory = loadInventory("hosts.ini", text);
    expect(inventory.groups.find((g) => g.name === "lab")).toEqual({
      name: "lab",
      hosts: ["kvm01"],
      children: [],
      vars: { images: "/srv" },
    });
  });

  it("keeps a variable named __proto__ as a variable", () => {
    const inventory = loadInventory("hosts.ini", "kvm01 __proto__=x\n[all:vars]\n__proto__=y\n");
    expect(Object.getPrototypeOf(inventory.hosts[0]?.vars)).toBe(Object.prototype);
    expect(Object.hasOwn(inventory.hosts[0]?.vars ?? {}, "__proto__")).toBe(true);
  });

  it("refuses a child group that is never defined, as Ansible's INI reader does (a typo, most often)", () => {
    expect(problems("hosts.ini", "[hypervisors:children]\nlba\n[lab]\nkvm01\n")).toEqual([
      "2:1 [hypervisors:children] names group 'lba', which is never defined (no [lba] section)",
    ]);
  });

  it("refuses vars for a group that is never defined", () => {
    expect(problems("hosts.ini", "[lba:vars]\nx=1\n[lab]\nkvm01\n")).toEqual([
      "1:2 [lba:vars] is for a group that is never defined (no [lba] section)",
    ]);
  });

  it("accepts a child group defined further down the file", () => {
    const inventory = loadInventory("hosts.ini", "[hypervisors:children]\nlab\n[lab]\nkvm01\n");
    expect(inventory.groups.map((g) => g.name)).toEqual(["all", "ungrouped", "hypervisors", "lab"]);
  });

  it.each([
    [
      "[lab",
      "1:1 malformed section header: expected [group], [group:vars] or [group:children], with no spaces",
    ],
    [
      "[my lab]",
      "1:1 malformed section header: expected [group], [group:vars] or [group:children], with no spaces",
    ],
    ["  [lab:host]", "1:8 unknown section type 'host': expected [lab], [lab:vars] or [lab:children]"],
    ["[lab]\n[lab:vars]\nimages /srv", "3:1 expected key=value in [lab:vars], found 'images /srv'"],
    ["[lab]\n[lab:vars]\n =/srv", "3:2 expected a variable name before '='"],
    [
      "[lab]\n[lab:vars]\nansible_port = x",
      '3:16 ansible_port: must be a port number from 1 to 65535, found string "x"',
    ],
    ["[lab:children]\nkvm extra", "2:5 expected one group name a line in [lab:children], found 'kvm extra'"],
    ["[lab:children]\nweb:vars", "2:4 expected one group name a line in [lab:children], found 'web:vars'"],
    ["[lab]\nkvm01 =x", "2:7 expected a variable name before '='"],
    ["[lab]\nkvm01 a='x", "2:9 unterminated ' quote"],
    ["[lab]\nkvm[3:1]", "2:1 host pattern 'kvm[3:1]': a range must not end before it begins"],
    [
      "kvm01 ansible_connection=docker",
      '1:26 ansible_connection: expected one of local, ssh, smart, paramiko, found string "docker"',
    ],
    [
      "kvm01 ansible_become=maybe",
      '1:22 ansible_become: must be true or false (or yes/no, on/off), found string "maybe"',
    ],
  ])("reports %j at its line and column", (text, problem) => {
    expect(problems("hosts.ini", text)).toEqual([problem]);
  });

  it("ignores the lines under a malformed header rather than misfiling them", () => {
    expect(problems("hosts.ini", "[lab\nkvm01 not-a-var\n[ok]\nkvm02\n")).toHaveLength(1);
  });

  it("reads Windows line endings", () => {
    expect(loadInventory("hosts.ini", "[lab]\r\nkvm01\r\n").hosts.map((h) => h.name)).toEqual(["kvm01"]);
  });
});
