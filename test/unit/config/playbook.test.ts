import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../../src/config/diagnostic.js";
import type { ReclaimPolicy } from "../../../src/config/model.js";
import { DEFAULT_POLICY, loadPlaybook } from "../../../src/config/playbook.js";
import { ConfigError } from "../../../src/errors.js";

const GiB = 2 ** 30;

/** Load a file of the repository under the name a user would see. */
function load(file: string) {
  return loadPlaybook(file, readFileSync(new URL(`../../../${file}`, import.meta.url), "utf8"));
}

/** Every problem `file` has, as `file:line:column: message`. */
function problems(file: string, text?: string): string[] {
  try {
    if (text === undefined) load(file);
    else loadPlaybook(file, text);
  } catch (error) {
    if (error instanceof ConfigError) return error.diagnostics.map(formatDiagnostic);
    throw error;
  }
  return [];
}

const fixture = (name: string) => `test/fixtures/playbooks/${name}`;

describe("the example playbook", () => {
  const { playbook } = load("playbooks/example.yml");
  const [play] = playbook.plays;
  const examplePolicy: ReclaimPolicy = {
    minReclaimableBytes: GiB,
    minRatio: 0.1,
    zero: "auto",
    fillReserve: { kind: "ratio", ratio: 0.05 },
    shutdown: "graceful",
    shutdownTimeoutMs: 300_000,
    convert: { format: "qcow2", compress: false, keepBackup: false },
    maxParallelPerHost: 1,
  };

  it("resolves to one play with its policy in bytes, shares and milliseconds", () => {
    expect(playbook.file).toBe("playbooks/example.yml");
    expect(playbook.plays).toHaveLength(1);
    expect(play).toMatchObject({
      name: "Reclaim guest disks on the lab hypervisors",
      hosts: "hypervisors",
      become: false,
      policy: examplePolicy,
      source: { file: "playbooks/example.yml", line: 2, column: 3 },
    });
  });

  it("gives each guest the play's policy, with its own keys on top", () => {
    const [web01, cache] = play?.guests ?? [];
    expect(web01).toEqual({
      name: "web01",
      os: "linux",
      ssh: { host: "192.168.122.10", user: "root" },
      access: "ssh",
      vm: { manager: "auto", libvirtUri: "qemu:///system" },
      disks: [
        {
          path: "/var/lib/libvirt/images/web01.qcow2",
          source: { file: "playbooks/example.yml", line: 17, column: 15 },
        },
      ],
      policy: examplePolicy,
      source: { file: "playbooks/example.yml", line: 16, column: 7 },
    });
    expect(cache?.policy).toEqual({ ...examplePolicy, zero: "none" });
    expect(cache).not.toHaveProperty("ssh");
    expect(cache).not.toHaveProperty("host");
  });
});

describe("the nightly playbook", () => {
  const { playbook } = load("playbooks/nightly.yml");
  const [nightly, archive] = playbook.plays;
  const guest = (name: string) => nightly?.guests.find((g) => g.name === name);

  it("resolves to two plays, the first with a host pattern and become", () => {
    expect(playbook.plays.map((p) => [p.hosts, p.become])).toEqual([
      ["kvm0*:!kvm09", true],
      ["archive", false],
    ]);
  });

  it("keeps the play's policy where a guest says nothing", () => {
    expect(guest("build-runner-01")?.policy).toEqual({
      ...DEFAULT_POLICY,
      minReclaimableBytes: 4 * GiB,
      minRatio: 0.25,
      zero: "trim",
      convert: { format: "qcow2", compress: false, keepBackup: true },
      maxParallelPerHost: 1,
    });
  });

  it("reads a disk written as a mapping like one written as a path", () => {
    expect(guest("build-runner-01")?.disks.map((d) => d.path)).toEqual([
      "/srv/vm/build-runner-01/root.qcow2",
      "/srv/vm/build-runner-01/cache.qcow2",
    ]);
    expect(guest("build-runner-01")).toMatchObject({
      host: "kvm01",
      ssh: { host: "build-runner-01.internal", user: "reclaim", port: 2222 },
    });
  });

  it("reads a fill reserve given as a size", () => {
    expect(guest("build-runner-02")?.policy.fillReserve).toEqual({ kind: "bytes", bytes: 2 * GiB });
  });

  it("merges a guest's convert over the play's key by key", () => {
    expect(guest("winbuild")?.policy).toMatchObject({
      zero: "none",
      shutdown: "graceful",
      shutdownTimeoutMs: 600_000,
      convert: { format: "qcow2", compress: true, keepBackup: true },
      maxParallelPerHost: 1,
    });
    expect(guest("winbuild")?.os).toBe("windows");
  });

  it("reads a share written as a fraction", () => {
    expect(archive?.policy.minRatio).toBe(0.2);
    expect(archive?.guests[0]?.disks).toHaveLength(2);
  });
});

describe("a playbook's defaults", () => {
  it("fill every policy key a play leaves out", () => {
    const { playbook } = loadPlaybook(
      "p.yml",
      "- name: x\n  hosts: all\n  guests: [{ name: a, disks: [/a.qcow2] }]\n",
    );
    const expected: ReclaimPolicy = {
      minReclaimableBytes: 256 * 2 ** 20,
      minRatio: 0.1,
      zero: "auto",
      fillReserve: { kind: "ratio", ratio: 0.05 },
      shutdown: "never",
      shutdownTimeoutMs: 300_000,
      convert: { format: "qcow2", compress: false, keepBackup: false },
      maxParallelPerHost: 1,
    };
    expect(playbook.plays[0]?.policy).toEqual(expected);
    expect(playbook.plays[0]?.guests[0]?.policy).toEqual(expected);
    expect(DEFAULT_POLICY).toEqual(expected);
  });

  it("let a play leave out its guests", () => {
    const { playbook } = loadPlaybook("p.yml", "- name: x\n  hosts: all\n");
    expect(playbook.plays[0]?.guests).toEqual([]);
  });

  it("treat the same path written two ways as one disk", () => {
    const text = "- name: x\n  hosts: all\n  guests: [{ name: a, disks: [/images/./a.qcow2] }]\n";
    expect(loadPlaybook("p.yml", text).playbook.plays[0]?.guests[0]?.disks[0]?.path).toBe("/images/a.qcow2");
  });
});

describe("a playbook with a problem", () => {
  it.each([
    [
      "a YAML syntax error",
      "syntax-error.yml",
      "6:1: YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ],
    ["a duplicate key", "duplicate-key.yml", "5:5: duplicate key: each key may appear once in a mapping"],
    ["a misspelt key", "unknown-key.yml", "4:5: policy: unknown key 'min_ration'; did you mean 'min_ratio'?"],
    [
      "an unknown zeroing mode",
      "unknown-zero-mode.yml",
      `6:13: guests.zero: expected one of auto, trim, fill, none, found string "sometimes"`,
    ],
    [
      "a size that is not one",
      "bad-size.yml",
      `4:22: policy.min_reclaimable: expected a size such as 512MiB, 1GiB, 1.5G or a number of bytes, found string "lots"`,
    ],
    [
      "a relative disk path",
      "relative-disk.yml",
      `6:11: guests.disks: expected an absolute path such as /var/lib/libvirt/images/web01.qcow2, found string "images/web01.qcow2"`,
    ],
    [
      "a guest declared twice",
      "guest-twice.yml",
      "8:13: guest 'web01' is declared twice in this play (first at line 4)",
    ],
    ["a play without hosts", "missing-hosts.yml", "1:3: missing required key 'hosts'"],
    [
      "a play that is not a mapping",
      "play-not-mapping.yml",
      `6:3: expected a mapping, found string "hypervisors"`,
    ],
    ["an empty file", "empty.yml", "1:1: the playbook is empty: expected a list of plays"],
    ["nothing but comments", "comments-only.yml", "1:1: the playbook is empty: expected a list of plays"],
    [
      "a document that is not a list",
      "not-a-list.yml",
      "1:1: a playbook is a list of plays, found a mapping; start each play with '- '",
    ],
  ])("reports %s at its position (%s)", (_, name, expected) => {
    expect(problems(fixture(name))).toEqual([`${fixture(name)}:${expected}`]);
  });

  it("reports values of the right form but out of range", () => {
    expect(problems(fixture("out-of-range.yml"))).toEqual(
      [
        `4:16: policy.min_ratio: expected a share between 0% and 100%, such as 10% or 0.1, found string "150%"`,
        `5:19: policy.fill_reserve: expected a share between 0% and 100% (such as 5%) or a size with a unit (such as 2GiB) of at most 8 PiB, found string "1024"`,
        `6:23: policy.shutdown_timeout: expected a duration such as 90s, 5m or 1h, of at most 2^53 ms, found string "99999999999h"`,
        `10:24: guests.min_reclaimable: expected a size such as 512MiB or 1.5G, of at most 8 PiB, found string "99999999T"`,
      ].map((p) => `${fixture("out-of-range.yml")}:${p}`),
    );
  });

  it("refuses disk paths that climb out with '..' or hide a NUL or a line break", () => {
    expect(problems(fixture("unsafe-disk-paths.yml"))).toEqual(
      [
        `6:11: guests.disks: a disk path must not contain '..' segments, found string "/var/lib/libvirt/images/../../../etc/shadow"`,
        `7:17: guests.disks.path: a disk path must not contain a NUL or a line break, found string "/var/lib/libvirt/images/web01\\n.qcow2"`,
        `8:11: guests.disks: a disk path must not contain a NUL or a line break, found string "/var/lib/libvirt/images/web01\\u0000.qcow2"`,
      ].map((p) => `${fixture("unsafe-disk-paths.yml")}:${p}`),
    );
  });

  it("refuses a disk claimed twice, unless by guests pinned to different hosts", () => {
    expect(problems(fixture("shared-disks.yml"))).toEqual(
      [
        "7:11: disk /var/lib/libvirt/images/web01.qcow2 is listed twice for guest 'web01' (first at line 6)",
        "11:15: disk /var/lib/libvirt/images/shared.qcow2 already belongs to guest 'web02' (line 9)",
      ].map((p) => `${fixture("shared-disks.yml")}:${p}`),
    );
  });

  it("reports every problem in the file at once, in position order", () => {
    expect(problems(fixture("many-problems.yml"))).toEqual(
      [
        "4:5: policy: unknown key 'min_ration'; did you mean 'min_ratio'?",
        `5:11: policy.zero: expected one of auto, trim, fill, none, found string "sometimes"`,
        `9:24: guests.min_reclaimable: expected a size such as 512MiB, 1GiB, 1.5G or a number of bytes, found string "lots"`,
        "10:13: guest 'web01' is declared twice in this play (first at line 7)",
        `11:15: guests.disks: expected an absolute path such as /var/lib/libvirt/images/web01.qcow2, found string "images/web01.qcow2"`,
        "12:3: missing required key 'hosts'",
        `16:18: guests.min_ratio: expected a share between 0% and 100%, such as 10% or 0.1, found string "150%"`,
      ].map((p) => `${fixture("many-problems.yml")}:${p}`),
    );
  });

  it.each([
    ["a list of numbers", "- 1\n- 2\n"],
    ["a list of lists", "- []\n- [[]]\n"],
    ["guests that are not a list", "- {name: x, hosts: y, guests: 3}\n"],
    ["a policy that is not a mapping", "- {name: x, hosts: y, policy: 5}\n"],
    [
      "policy values of every wrong type",
      "- {name: x, hosts: y, policy: {convert: 3, min_ratio: [1], zero: {}}}\n",
    ],
    [
      "guests of every wrong shape",
      "- {name: x, hosts: y, guests: [3, {disks: 5}, {name: 1, disks: [{}, 7, {path: 3}]}]}\n",
    ],
    ["an ssh that is a number", "- {name: x, hosts: y, guests: [{name: a, disks: [/a], ssh: 5}]}\n"],
    [
      "two guests with a numeric host",
      "- {name: x, hosts: y, guests: [{name: a, disks: [/a], host: 5}, {name: a, disks: [/a], host: 5}]}\n",
    ],
    ["numbers where names belong", "- {name: 1, hosts: 2, become: yes}\n"],
    [
      "infinities and NaN",
      "- {name: x, hosts: y, policy: {min_reclaimable: .inf, min_ratio: .nan, shutdown_timeout: -.inf}}\n",
    ],
    ["a key named __proto__", "- {__proto__: {name: x}, name: x, hosts: y}\n"],
    ["two documents", "- {name: x, hosts: y}\n---\n- {name: z, hosts: y}\n"],
    ["a complex mapping key", "? [a]\n: b\n"],
    ["an alias to itself", "- &a {name: x, hosts: y, guests: [*a]}\n"],
    ["an unknown tag", "- !custom {name: x, hosts: y}\n"],
    ["control characters", "\u0000\u0001\u0002"],
    ["unbalanced brackets", "{{{{["],
    ["deep nesting", `${"[".repeat(5000)}${"]".repeat(5000)}`],
    [
      "an alias bomb",
      `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n`,
    ],
  ])("throws a ConfigError and nothing else for %s", (_, text) => {
    expect(() => loadPlaybook("bad.yml", text)).toThrow(ConfigError);
  });
});

describe("a play that discovers its guests", () => {
  const text = (guests: string) =>
    `- name: every domain\n  hosts: all\n  vm:\n    manager: libvirt\n  guests:\n${guests}`;

  it("resolves the patterns and what each discovered guest gets, with no named guests", () => {
    const { playbook } = loadPlaybook(
      "pb.yml",
      text("    discover: libvirt\n    include: [web*, db?]\n    exclude: [web-test]\n    access: agent\n"),
    );
    const [play] = playbook.plays;
    expect(play?.guests).toEqual([]);
    expect(play?.discover).toEqual({
      kind: "libvirt",
      include: ["web*", "db?"],
      exclude: ["web-test"],
      os: "linux",
      access: "agent",
      vm: { manager: "libvirt", libvirtUri: "qemu:///system" },
      source: { file: "pb.yml", line: 6, column: 5 },
    });
  });

  it("points at a discovery with an unknown source or key", () => {
    const problems = (guests: string) => {
      try {
        loadPlaybook("pb.yml", text(guests));
        return [];
      } catch (error) {
        return (error as ConfigError).diagnostics.map((d) => `${d.line}:${d.column}: ${d.message}`);
      }
    };
    expect(problems("    discover: vmware\n")).toEqual([
      `6:15: guests.discover: expected one of libvirt, found string "vmware"`,
    ]);
    expect(problems("    discover: libvirt\n    inclde: [web*]\n")).toEqual([
      "7:5: guests: unknown key 'inclde'; did you mean 'include'?",
    ]);
  });
});
