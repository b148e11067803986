/**
 * Files written to hurt: alias bombs, huge files, deep nesting, long lines, many keys and hosts,
 * host ranges that multiply. Whatever comes in, a loader returns or throws a ConfigError whose
 * problems say where (file:line:column) and what was expected; never a RangeError, never a hang.
 * How long each takes and how much memory is measured outside the suite, not asserted here; the
 * generous timeouts only keep a loaded CI machine from failing the slowest (a 5 MiB YAML inventory).
 */
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../../src/config/diagnostic.js";
import {
  MAX_ALIAS_EXPANSION,
  MAX_ANCHORS_AND_ALIASES,
  MAX_NESTING,
  MAX_SOURCE_BYTES,
  MAX_YAML_TOKENS,
} from "../../../src/config/limits.js";
import { loadPlaybook } from "../../../src/config/playbook.js";
import { checkInventoryReferences } from "../../../src/config/references.js";
import { readSourceFile, sourceSizeProblems } from "../../../src/config/source-file.js";
import { ConfigError, UsageError } from "../../../src/errors.js";
import { MAX_HOSTS_PER_PATTERN, MAX_INVENTORY_HOSTS } from "../../../src/inventory/host-range.js";
import { loadInventory } from "../../../src/inventory/load.js";
import { MAX_INHERITED_VARS, MAX_MEMBERSHIPS } from "../../../src/inventory/resolve.js";
import { parseSavedPlan } from "../../../src/plan/saved.js";

/** The problems of a load that must be refused; any exception but a ConfigError fails the test. */
function problems(load: () => unknown): string[] {
  try {
    load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.diagnostics.map(formatDiagnostic);
  }
  throw new Error("expected the file to be refused");
}

/** 1-based line and column of the `nth` (1-based) occurrence of `needle` in `text`. */
function positionOf(text: string, needle: string, nth = 1): string {
  let at = -1;
  for (let i = 0; i < nth; i += 1) at = text.indexOf(needle, at + 1);
  const before = text.slice(0, at).split("\n");
  return `${before.length}:${(before.at(-1)?.length ?? 0) + 1}`;
}

/** Ten levels of ten: each alias repeats the list above it ten times. */
function laughs(indent: string, levels: number): string {
  const lines = [`${indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]`];
  for (let i = 1; i < levels; i += 1)
    lines.push(
      `${indent}l${i}: &l${i} [${Array(10)
        .fill(`*l${i - 1}`)
        .join(", ")}]`,
    );
  return `${lines.join("\n")}\n`;
}

describe("an alias bomb (billion laughs)", { timeout: 120_000 }, () => {
  const expansion = `makes aliases repeat more than ${MAX_ALIAS_EXPANSION} nodes in all (a "billion laughs" document?): expected far fewer`;

  it("is refused at the alias that crosses the expansion limit, before any value is built", () => {
    const text = `- name: lol\n  hosts: all\n  policy:\n${laughs("    ", 9)}`;
    // l0..l3 add 110 + 1,110 + 11,110 nodes; the 8th *l3 in l4 passes 100,000.
    expect(problems(() => loadPlaybook("bomb.yml", text))).toEqual([
      `bomb.yml:${positionOf(text, "*l3", 8)}: alias *l3 ${expansion}`,
    ]);
  });

  it("hidden in an inventory's group variables is refused at its alias", () => {
    const text = `all:\n  vars:\n${laughs("    ", 9)}  hosts:\n    kvm01:\n`;
    expect(problems(() => loadInventory("hosts.yml", text))).toEqual([
      `hosts.yml:${positionOf(text, "*l3", 8)}: alias *l3 ${expansion}`,
    ]);
  });

  it("hidden in a host's variables is refused at its alias", () => {
    const text = `all:\n  hosts:\n    kvm01:\n${laughs("      ", 9)}`;
    expect(problems(() => loadInventory("hosts.yml", text))).toEqual([
      `hosts.yml:${positionOf(text, "*l3", 8)}: alias *l3 ${expansion}`,
    ]);
  });

  it("carried by YAML 1.1 merge keys (<<) is refused at its alias", () => {
    // Each level merges the one above and lists it four more times: five times larger a level.
    const lines = ["%YAML 1.1", "---", "all:", "  vars:", "    m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5}"];
    for (let i = 1; i < 9; i += 1) {
      const above = `*m${i - 1}`;
      lines.push(`    m${i}: &m${i} {<<: ${above}, n${i}: [${Array(4).fill(above).join(", ")}]}`);
    }
    const text = `${lines.join("\n")}\n`;
    // Level i is 4 + 5 × level i-1 nodes (11, 59, 299, 1499, 7499, 37499): m1 to m5 add 46,835;
    // m6's merge of m5 makes 84,334 and its first listed *m5 passes 100,000.
    expect(problems(() => loadInventory("merge.yml", text))).toEqual([
      `merge.yml:${positionOf(text, "*m5", 2)}: alias *m5 ${expansion}`,
    ]);
  });

  it("leaves a YAML 1.1 merge key of ordinary size working", () => {
    const text =
      "%YAML 1.1\n---\nall:\n  vars: &v {ansible_user: ops}\n  hosts:\n    kvm01: {<<: *v, ansible_port: 2222}\n";
    expect(loadInventory("merge.yml", text).hosts[0]?.vars).toEqual({
      ansible_user: "ops",
      ansible_port: 2222,
    });
  });

  it("refuses an alias inside the node it names, rather than building a cycle", () => {
    const text = "- &play {name: x, hosts: all, guests: [*play]}\n";
    expect(problems(() => loadPlaybook("loop.yml", text))).toEqual([
      "loop.yml:1:40: alias *play is inside the node it names: expected an alias of a node complete before it",
    ]);
  });

  it("refuses an alias with no anchor before it, at the alias", () => {
    const text = "all:\n  hosts:\n    kvm01: *later\n  vars: &later {a: 1}\n";
    expect(problems(() => loadInventory("hosts.yml", text))).toEqual([
      "hosts.yml:3:12: alias *later has no anchor &later before it",
    ]);
  });

  it("refuses more anchors and aliases than the limit, at the first one past it", () => {
    const text = `all:\n  vars:\n    a: &a 1\n    b: [${Array(MAX_ANCHORS_AND_ALIASES).fill("*a").join(",")}]\n`;
    // The anchor is the first; the last alias is one too many.
    expect(problems(() => loadInventory("hosts.yml", text))).toEqual([
      `hosts.yml:4:${9 + 3 * (MAX_ANCHORS_AND_ALIASES - 1)}: more than ${MAX_ANCHORS_AND_ALIASES} anchors and aliases: expected at most ${MAX_ANCHORS_AND_ALIASES} in one file`,
    ]);
  });
});

describe("a huge file", { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "reclaim-hostile-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const limit = `expected at most ${MAX_SOURCE_BYTES} bytes (16 MiB)`;

  it("is refused from its size on disk, naming the file, its size and the limit, without reading it", async () => {
    const file = join(dir, "disk-image.yml");
    writeFileSync(file, "");
    truncateSync(file, 20 * 2 ** 20); // sparse: nothing is written
    expect((await sourceSizeProblems([file, join(dir, "missing.yml")])).map(formatDiagnostic)).toEqual([
      `${file}:1:1: file too large: ${20 * 2 ** 20} bytes (20 MiB); ${limit}`,
    ]);
    await expect(readSourceFile(file)).rejects.toThrow(ConfigError);
  });

  it("that never ends is refused once the limit is read", async () => {
    const error = await readSourceFile("/dev/zero").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).diagnostics.map(formatDiagnostic)).toEqual([
      `/dev/zero:1:1: file too large: more than ${MAX_SOURCE_BYTES} bytes (16 MiB); ${limit}`,
    ]);
  });

  it("given as text is refused before it is parsed, as a playbook or as either inventory format", () => {
    const text = `# ${"x".repeat(MAX_SOURCE_BYTES)}\n`;
    const refusal = `file too large: ${MAX_SOURCE_BYTES + 3} bytes (16 MiB); ${limit}`;
    expect(problems(() => loadPlaybook("big.yml", text))).toEqual([`big.yml:1:1: ${refusal}`]);
    expect(problems(() => loadInventory("big.yml", text))).toEqual([`big.yml:1:1: ${refusal}`]);
    expect(problems(() => loadInventory("big.ini", text))).toEqual([`big.ini:1:1: ${refusal}`]);
  });

  it("counts bytes, not characters: 6 million three-byte characters are too many", () => {
    const text = `a: ${"€".repeat(6_000_000)}\n`;
    expect(problems(() => loadPlaybook("big.yml", text))[0]).toMatch(
      /^big\.yml:1:1: file too large: 18000004 bytes/,
    );
  });

  it("of more YAML tokens than the limit is refused at the first token past it", () => {
    const text = `- name: [${"1,".repeat(MAX_YAML_TOKENS / 2)}1]\n`;
    // The lexer's tokens: a document marker, `-`, ` `, a scalar marker, `name`, `:`, ` `, `[` (8),
    // then a scalar marker, the `1` (at column 10 + 2i) and `,` for each item i.
    const item = Math.floor((MAX_YAML_TOKENS + 1 - 9) / 3);
    expect(problems(() => loadPlaybook("tokens.yml", text))).toEqual([
      `tokens.yml:1:${10 + 2 * item}: more than ${MAX_YAML_TOKENS} YAML tokens (values, punctuation, spaces, comments): expected a smaller file`,
    ]);
  });
});

describe("deep nesting", { timeout: 120_000 }, () => {
  const deep = `nested more than ${MAX_NESTING} levels deep`;

  it.each([
    ["[", "[".repeat(100_000)],
    ["{", "{".repeat(100_000)],
    ["[ closed again", `${"[".repeat(100_000)}${"]".repeat(100_000)}`],
  ])(
    "of 100,000 levels of %s is refused at the level past the limit, without overflowing the stack",
    (_, text) => {
      expect(problems(() => loadPlaybook("deep.yml", text))).toEqual([
        `deep.yml:1:${MAX_NESTING + 1}: ${deep}`,
      ]);
    },
  );

  it("by indentation is refused at the line that goes one level too deep", () => {
    const text = Array.from({ length: 1000 }, (_, i) => `${" ".repeat(i)}a:`).join("\n");
    expect(problems(() => loadPlaybook("deep.yml", text))).toEqual([
      `deep.yml:${MAX_NESTING + 1}:${MAX_NESTING + 1}: ${deep}`,
    ]);
  });

  it("by 100,000 compact sequence entries on one line (- - - …) is refused", () => {
    const text = `${"- ".repeat(100_000)}x\n`;
    expect(problems(() => loadPlaybook("deep.yml", text))).toEqual([
      `deep.yml:1:${2 * MAX_NESTING + 1}: ${deep}`,
    ]);
  });

  it("inside inventory variables is refused at its position", () => {
    const text = `all:\n  vars:\n    deep: ${"[".repeat(100_000)}\n`;
    // all, its mapping and vars' mapping are three levels: the 254th bracket is the 257th.
    expect(problems(() => loadInventory("hosts.yml", text))).toEqual([`hosts.yml:3:${11 + 253}: ${deep}`]);
  });

  it("in a saved plan (JSON) is refused with its position, before JSON.parse or JSON.stringify see it", () => {
    const head = '{"format": "reclaim-saved-plan",\n "x": ';
    const text = `${head}${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    const refuse = () => parseSavedPlan("plan.json", text);
    expect(refuse).toThrow(UsageError);
    // The object is the first level: the 256th bracket, at column 7 + 255, is the 257th.
    expect(refuse).toThrow(`plan.json:2:${7 + 255}: not a saved plan: ${deep}`);
  });

  it("in a saved plan does not count brackets inside strings", () => {
    const text = `{"format": "reclaim-saved-plan", "version": 0, "x": "${"[".repeat(1000)}\\"${"{".repeat(1000)}"}`;
    expect(() => parseSavedPlan("plan.json", text)).toThrow("plan.json: a saved plan of version 0");
  });
});

describe("long lines, many keys and many hosts", { timeout: 120_000 }, () => {
  it("reads a 15 MiB line in an INI inventory", () => {
    const inventory = loadInventory("hosts.ini", `[lab]\nkvm01 note="${"x".repeat(15 * 2 ** 20)}"\n`);
    expect(inventory.hosts[0]?.vars.note).toHaveLength(15 * 2 ** 20);
  });

  it("reads a 15 MiB scalar in a YAML inventory", () => {
    const inventory = loadInventory(
      "hosts.yml",
      `all:\n  hosts:\n    kvm01:\n      note: ${"x".repeat(15 * 2 ** 20)}\n`,
    );
    expect(inventory.hosts[0]?.vars.note).toHaveLength(15 * 2 ** 20);
  });

  it("reads a mapping of 100,000 keys, and still finds the one key written twice", () => {
    const keys = Array.from({ length: 100_000 }, (_, i) => `    k${i}: ${i}`);
    const text = `all:\n  vars:\n${keys.join("\n")}\n  hosts:\n    kvm01:\n`;
    expect(Object.keys(loadInventory("hosts.yml", text).hosts[0]?.vars ?? {})).toHaveLength(100_000);
    const twice = `${text}  vars2:\n`.replace("    k99999: 99999", "    k99999: 99999\n    k5: again");
    expect(problems(() => loadInventory("hosts.yml", twice))[0]).toBe(
      "hosts.yml:100003:5: duplicate key: each key may appear once in a mapping",
    );
  });

  /** 50 groups of 1,000 hosts, four variables each: 4.4 MiB as INI, 5.3 MiB as YAML. */
  function fleet(format: "ini" | "yaml"): string {
    const parts: string[] = format === "yaml" ? ["all:\n  children:\n"] : [];
    for (let g = 0; g < 50; g += 1) {
      parts.push(format === "yaml" ? `    rack${g}:\n      hosts:\n` : `[rack${g}]\n`);
      for (let h = 0; h < 1000; h += 1) {
        const name = `kvm-${g}-${h}.example.org`;
        const address = `10.${g}.${h >> 8}.${h & 255}`;
        parts.push(
          format === "yaml"
            ? `        ${name}: {ansible_host: ${address}, ansible_user: reclaim, ansible_port: 22, rack: r${g}}\n`
            : `${name} ansible_host=${address} ansible_user=reclaim ansible_port=22 rack=r${g}\n`,
        );
      }
    }
    return parts.join("");
  }

  it.each(["ini", "yaml"] as const)(
    "reads a %s inventory of 50,000 hosts (4 to 5 MiB) in full",
    { timeout: 300_000 },
    (format) => {
      const text = fleet(format);
      expect(text.length).toBeGreaterThan(4 * 2 ** 20);
      const inventory = loadInventory(`fleet.${format}`, text);
      expect(inventory.hosts).toHaveLength(50_000);
      expect(inventory.hosts[49_999]?.connection).toEqual({
        kind: "ssh",
        address: "10.49.3.231",
        port: 22,
        user: "reclaim",
      });
    },
  );

  it("reads a play of 20,000 guests without comparing each with every other", () => {
    const guests = Array.from(
      { length: 20_000 },
      (_, i) => `    - {name: g${i}, disks: [/images/g${i}.qcow2]}`,
    );
    const text = `- name: many\n  hosts: all\n  guests:\n${guests.join("\n")}\n    - {name: g7, disks: [/images/g9.qcow2]}\n`;
    expect(problems(() => loadPlaybook("many.yml", text))).toEqual([
      "many.yml:20004:14: guest 'g7' is declared twice in this play (first at line 11)",
      "many.yml:20004:26: disk /images/g9.qcow2 already belongs to guest 'g9' (line 13)",
    ]);
  });

  it("matches a wildcard that would backtrack exponentially in a moment", () => {
    const inventory = loadInventory("hosts.ini", `${"a".repeat(5000)}\n`);
    const playbook = loadPlaybook(
      "pb.yml",
      "- name: p\n  hosts: '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b'\n",
    ).playbook;
    expect(checkInventoryReferences(playbook, inventory).map(formatDiagnostic)).toEqual([
      "pb.yml:2:10: hosts: pattern '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b' matches no host or group in hosts.ini",
    ]);
  });
});

describe("host ranges and what multiplies with hosts", { timeout: 120_000 }, () => {
  it.each([
    ["hosts.ini", "[web]\nweb[1:99999999]\n", "2:1"],
    ["hosts.yml", "all:\n  hosts:\n    web[1:99999999]:\n", "3:5"],
  ])("refuses a range of a hundred million hosts at its pattern (%s)", (file, text, at) => {
    expect(problems(() => loadInventory(file, text))).toEqual([
      `${file}:${at}: host pattern 'web[1:99999999]': expands to more than ${MAX_HOSTS_PER_PATTERN} hosts`,
    ]);
  });

  it("refuses nested ranges that multiply past the limit", () => {
    expect(problems(() => loadInventory("hosts.ini", "[web]\nw[1:100][1:100][1:100]\n"))).toEqual([
      `hosts.ini:2:1: host pattern 'w[1:100][1:100][1:100]': expands to more than ${MAX_HOSTS_PER_PATTERN} hosts`,
    ]);
  });

  const tooManyHosts = `more than ${MAX_INVENTORY_HOSTS} hosts in the inventory (each range expanded, each host counted wherever it is written): expected at most ${MAX_INVENTORY_HOSTS}`;

  it("refuses ranges each within their limit once the inventory passes its host limit, at that line, once", () => {
    const lines = Array.from({ length: 2000 }, (_, i) => `r${i}-[0:9999]`);
    // Ten ranges of 10,000 reach the limit exactly; the eleventh passes it.
    expect(problems(() => loadInventory("hosts.ini", `[web]\n${lines.join("\n")}\n`))).toEqual([
      `hosts.ini:12:1: ${tooManyHosts}`,
    ]);
    const yaml = `all:\n  hosts:\n${lines.map((l) => `    ${l}:`).join("\n")}\n`;
    expect(problems(() => loadInventory("hosts.yml", yaml))).toEqual([`hosts.yml:13:5: ${tooManyHosts}`]);
  });

  it("refuses child groups so deep over so many hosts that memberships pass the limit, at the group", () => {
    const chain = Array.from({ length: 100 }, (_, i) => `[g${i}:children]\ng${i + 1}\n`).join("");
    const text = `${chain}[g100]\n${Array.from({ length: 2 }, (_, i) => `h${i}-[0:9999]`).join("\n")}\n`;
    // 20,000 hosts in g100, each in all 101 groups of the chain and `all`: 2,040,000.
    expect(problems(() => loadInventory("hosts.ini", text))).toEqual([
      `hosts.ini:200:1: more than ${MAX_MEMBERSHIPS} host-group memberships (each host in each of its groups and their parents) after this group: expected fewer hosts or shallower child groups`,
    ]);
  });

  it("refuses group variables that every host would copy past the limit, before any host is built", () => {
    const vars = Array.from({ length: 1000 }, (_, i) => `v${i}=${i}`).join("\n");
    const text = `[all:vars]\n${vars}\n[web]\nw[0:9999]\n`;
    // 2,000 hosts inherit 2,000,000 variables; the 2,001st, on line 1003 with all others, passes.
    expect(problems(() => loadInventory("hosts.ini", text))).toEqual([
      `hosts.ini:1003:1: hosts up to this one inherit more than ${MAX_INHERITED_VARS} group variables in all: expected fewer group variables or fewer hosts`,
    ]);
  });

  it("names each of thousands of group cycles by the ends of its loop", () => {
    const text = `${Array.from({ length: 3000 }, (_, i) => `[g${i}:children]\ng${i + 1}\ng0\n`).join("")}[g3000]\n`;
    const found = problems(() => loadInventory("hosts.ini", text));
    expect(found).toHaveLength(3000);
    expect(found[2999]).toBe(
      "hosts.ini:9000:1: group cycle: g0 → g1 → g2 → g3 → g4 → g5 → … 2988 more … → g2994 → g2995 → g2996 → g2997 → g2998 → g2999 → g0; a group cannot contain itself",
    );
  });
});
