import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../src/errors.js";
import { inventoryFormat, loadInventory } from "../../../src/inventory/load.js";
import { diagnosticsOf, fixtureText, loadFixture, problems } from "./fixture.js";

describe("loadInventory", () => {
  it("resolves the YAML and the INI form of one inventory to the same hosts and groups", () => {
    const yaml = loadFixture("hypervisors.yml");
    const ini = loadFixture("hypervisors.ini");
    expect(ini.hosts).toEqual(yaml.hosts);
    expect(ini.groups).toEqual(yaml.groups);
    expect(yaml.hosts.map((h) => h.name)).toEqual(["localhost", "kvm04", "kvm01", "kvm02", "kvm03", "nas01"]);
    expect(yaml.groups.map((g) => g.name)).toEqual(["all", "ungrouped", "hypervisors", "lab", "storage"]);
  });

  it("gives each host its connection, become flag, groups and merged vars", () => {
    const kvm02 = loadFixture("hypervisors.yml").hosts.find((h) => h.name === "kvm02");
    expect(kvm02).toEqual({
      name: "kvm02",
      connection: { kind: "ssh", address: "127.0.0.3", port: 2222, user: "reclaim" },
      become: true,
      vars: {
        ansible_user: "reclaim",
        backup_dir: "/var/backups",
        ansible_become: "yes",
        images_dir: "/srv/lab/images",
        ansible_host: "127.0.0.3",
        ansible_port: 2222,
      },
      groups: ["all", "hypervisors", "lab"],
    });
  });

  it("loads the sample inventory shipped in inventory/lab.yml", () => {
    const text = readFileSync(new URL("../../../inventory/lab.yml", import.meta.url), "utf8");
    const lab = loadInventory("inventory/lab.yml", text);
    expect(lab.hosts.map((h) => [h.name, h.connection])).toEqual([
      ["localhost", { kind: "local" }],
      ["kvm01", { kind: "ssh", address: "127.0.0.2", user: "reclaim" }],
      ["kvm02", { kind: "ssh", address: "127.0.0.3", user: "reclaim" }],
    ]);
    expect(lab.groups.find((g) => g.name === "hypervisors")?.children).toEqual(["lab"]);
  });

  it("reads a file without extension as INI or YAML by its first line", () => {
    expect(inventoryFormat("hosts", "# lab\n\n[lab]\nkvm01\n")).toBe("ini");
    expect(inventoryFormat("hosts", "kvm01 ansible_host=127.0.0.2\n")).toBe("ini");
    expect(inventoryFormat("hosts", "kvm01:2222\n")).toBe("ini");
    expect(inventoryFormat("hosts", "kvm01 # note: old\n")).toBe("ini");
    expect(inventoryFormat("hosts", "# lab\nall:\n  hosts:\n")).toBe("yaml");
    expect(inventoryFormat("hosts", "---\nall: {}\n")).toBe("yaml");
    expect(inventoryFormat("hosts", '{"all": {}}')).toBe("yaml");
    expect(inventoryFormat("hosts.yaml", "[lab]")).toBe("yaml");
    expect(inventoryFormat("hosts.ini", "all:")).toBe("ini");
    expect(loadInventory("hosts", "[lab]\nkvm01\n").hosts.map((h) => h.name)).toEqual(["kvm01"]);
    expect(loadInventory("hosts", "\uFEFF[lab]\nkvm01\n").hosts.map((h) => h.name)).toEqual(["kvm01"]);
  });
});

describe("loadInventory's errors", () => {
  it("points at a YAML syntax error", () => {
    expect(problems("syntax-error.yml", fixtureText("syntax-error.yml"))).toEqual([
      "5:5 YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
  });

  it("points at the second of two equal keys", () => {
    expect(problems("duplicate-key.yml", fixtureText("duplicate-key.yml"))).toEqual([
      "5:5 duplicate key: each key may appear once in a mapping",
    ]);
  });

  it("suggests 'children' for a misspelt 'childern'", () => {
    expect(problems("misspelt-children.yml", fixtureText("misspelt-children.yml"))).toEqual([
      "4:3 all: unknown key 'childern'; did you mean 'children'?",
    ]);
  });

  it("rejects a port that is not a number, in YAML and in INI alike", () => {
    expect(problems("bad-port.yml", fixtureText("bad-port.yml"))).toEqual([
      '5:21 all.hosts.kvm01.ansible_port: must be a port number from 1 to 65535, found string "abc"',
    ]);
    expect(problems("bad-port.ini", fixtureText("bad-port.ini"))).toEqual([
      '2:43 ansible_port: must be a port number from 1 to 65535, found string "abc"',
    ]);
  });

  it("points at the word of an INI host line that is not key=value", () => {
    expect(problems("malformed-line.ini", fixtureText("malformed-line.ini"))).toEqual([
      "3:7 expected key=value after the host, found 'ansible_host'",
      "3:20 expected key=value after the host, found '127.0.0.3'",
    ]);
  });

  it("reports a child group cycle where the cycle closes, in YAML and in INI", () => {
    expect(problems("cycle.yml", fixtureText("cycle.yml"))).toEqual([
      "7:13 group cycle: hypervisors → lab → hypervisors; a group cannot contain itself",
    ]);
    expect(problems("cycle.ini", fixtureText("cycle.ini"))).toEqual([
      "5:1 group cycle: hypervisors → lab → hypervisors; a group cannot contain itself",
    ]);
  });

  it("reports every problem at once, in file order", () => {
    const text =
      "all:\n  hosts:\n    kvm01:\n      ansible_port: 0\n  childern:\n    a:\n      children:\n        a:\n";
    expect(problems("many.yml", text)).toEqual([
      "4:21 all.hosts.kvm01.ansible_port: must be >= 1",
      "5:3 all: unknown key 'childern'; did you mean 'children'?",
    ]);
    expect(problems("many.ini", "[a:children]\na\n[b]\nkvm01:0\n[c:nope]\n")).toEqual([
      "2:1 group cycle: a → a; a group cannot contain itself",
      "4:1 kvm01:0: port must be a port number from 1 to 65535, found number 0",
      "5:4 unknown section type 'nope': expected [c], [c:vars] or [c:children]",
    ]);
  });

  it("refuses an empty YAML inventory", () => {
    expect(problems("empty.yml", "")).toEqual(["1:1 expected a mapping, found nothing"]);
  });

  it("refuses groups nested deeper than any real inventory, without overflowing the stack", () => {
    const lines = ["all:"];
    // 120 groups deep: past the group limit, within YAML's own nesting limit of 256 levels.
    for (let depth = 1; depth <= 120; depth += 1)
      lines.push(`${"  ".repeat(2 * depth - 1)}children:`, `${"  ".repeat(2 * depth)}g${depth}:`);
    const [first] = diagnosticsOf("deep.yml", lines.join("\n"));
    expect(first?.message).toBe("group 'g100' is nested more than 100 deep");
  });

  it("reads a long chain of INI child groups without overflowing the stack", () => {
    const sections = Array.from({ length: 5000 }, (_, i) => `[g${i}:children]\ng${i + 1}\n`);
    const inventory = loadInventory("chain.ini", `${sections.join("")}[g5000]\nkvm01\n`);
    expect(inventory.hosts[0]?.groups).toHaveLength(5002);
  });
});

describe("loadInventory on damaged input", () => {
  // A fixed seed: the same damage every run, so a failure can be replayed.
  function random(seed: number): () => number {
    let state = seed;
    return () => {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const SPECIALS = [
    "[",
    "]",
    ":",
    "{",
    "}",
    "#",
    "=",
    "\n",
    " ",
    '"',
    "'",
    "!",
    "&",
    "*",
    "-",
    "\\",
    "0",
    "a",
    "\t",
    ";",
  ];

  it.each(["hypervisors.yml", "hypervisors.ini"])(
    "throws nothing but ConfigError for damaged copies of %s",
    (name) => {
      const next = random(name.length);
      const original = fixtureText(name);
      for (let round = 0; round < 400; round += 1) {
        let text = original;
        for (let edits = 1 + Math.floor(next() * 4); edits > 0; edits -= 1) {
          const at = Math.floor(next() * text.length);
          const special = SPECIALS[Math.floor(next() * SPECIALS.length)] ?? "";
          text =
            next() < 0.5
              ? text.slice(0, at) + special + text.slice(at)
              : text.slice(0, at) + text.slice(at + 1);
        }
        for (const file of ["damaged.yml", "damaged.ini"]) {
          try {
            loadInventory(file, text);
          } catch (error) {
            if (!(error instanceof ConfigError))
              throw new Error(`${file} threw ${String(error)} for:\n${text}`);
            for (const d of error.diagnostics) expect(d.line >= 1 && d.column >= 1).toBe(true);
          }
        }
      }
    },
    60_000,
  );
});
