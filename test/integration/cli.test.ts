/**
 * The built `reclaim` binary, run as a user runs it: arguments in, exit code and output out.
 * Paths are given relative to the repository root (the child's working directory), so the
 * diagnostics name them exactly as a user would see them.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { deferCleanups } from "../helpers/cleanup.js";
import { type CliRun, ensureBuilt, ROOT, runCliProcess } from "../helpers/cli.js";
import { allocated, bloatedImage, writeLocalInventory, writePlaybook } from "../helpers/images.js";

const EXIT = { ok: 0, unreachable: 3, config: 4, usage: 5 } as const;

const LAB = "inventory/lab.yml";
const MANY_MISTAKES = "test/fixtures/cli/many-mistakes.yml";
const SYNTAX_ERROR = "test/fixtures/cli/syntax-error.yml";
const PRODUCTION = "test/fixtures/cli/production.yml";
const MISSPELT_CHILDREN = "test/fixtures/inventory/misspelt-children.yml";

const { workspace } = deferCleanups();

function scratch(): string {
  return workspace("reclaim-cli-test-").dir;
}

/** The `file:line:column: message` lines of stderr, in the order printed. */
function diagnostics(run: CliRun): string[] {
  return run.stderr.split("\n").filter((line) => /^[^\s:]+:\d+:\d+: /.test(line));
}

/** A Node stack frame, which a user should never see for a mistake of theirs. */
const STACK_FRAME = /^ {4}at /m;

/** What a file looks like from the outside: a rewrite replaces the inode and changes the blocks. */
function fingerprint(path: string): [number, number, number] {
  const st = statSync(path);
  return [st.ino, st.mtimeMs, st.blocks];
}

function listing(dir: string): string[] {
  return readdirSync(dir).sort();
}

beforeAll(() => ensureBuilt(), 120_000);

describe("reclaim validate", () => {
  it("accepts the example playbook against the lab inventory and says it is valid", async () => {
    const run = await runCliProcess(["validate", "-i", LAB, "playbooks/example.yml"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toBe("valid: 1 play(s), 2 guest(s), 3 inventory host(s)\n");
  });

  it("accepts the nightly playbook against an inventory that has its kvm0* hosts and archive group", async () => {
    const run = await runCliProcess(["validate", "-i", PRODUCTION, "playbooks/nightly.yml"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toBe("valid: 2 play(s), 4 guest(s), 5 inventory host(s)\n");
  });

  it.each([
    ["playbooks/ci-nightly.yml", "valid: 1 play(s), 3 guest(s), 3 inventory host(s)\n"],
    ["playbooks/one-off-reclaim.yml", "valid: 1 play(s), 2 guest(s), 3 inventory host(s)\n"],
    [
      "playbooks/fleet-discovery.yml",
      "valid: 1 play(s), 0 guest(s), 1 play(s) discovering guests in libvirt, 3 inventory host(s)\n",
    ],
  ])("accepts the example %s against the lab inventory", async (file, valid) => {
    const run = await runCliProcess(["validate", "-i", LAB, file]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toBe(valid);
  });

  it("reports every mistake in a playbook at once, each at its exact line and column, and exits 4", async () => {
    const run = await runCliProcess(["validate", "-i", LAB, MANY_MISTAKES]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(diagnostics(run)).toEqual([
      `${MANY_MISTAKES}:3:10: hosts: pattern 'hypervisers' matches no host or group in ${LAB}`,
      `${MANY_MISTAKES}:5:5: policy: unknown key 'min_ration'; did you mean 'min_ratio'?`,
      `${MANY_MISTAKES}:6:11: policy.zero: expected one of auto, trim, fill, none, found string "sometimes"`,
      `${MANY_MISTAKES}:11:15: guests.disks: expected an absolute path such as /var/lib/libvirt/images/web01.qcow2, found string "images/db01.qcow2"`,
      `${MANY_MISTAKES}:12:13: guest 'web01' is declared twice in this play (first at line 8)`,
    ]);
    expect(run.stderr).toMatch(/^reclaim: 5 problems in the configuration$/m);
  });

  it("suggests the key that was probably meant for a misspelt one", async () => {
    const run = await runCliProcess(["validate", "-i", LAB, MANY_MISTAKES]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stderr).toContain("did you mean 'min_ratio'?");
  });

  it("reports a hosts pattern that matches nothing in the inventory at the pattern itself", async () => {
    const dir = scratch();
    const playbook = join(dir, "playbook.yml");
    writeFileSync(
      playbook,
      "- name: Reclaim the lab\n  hosts: hypervisers\n  guests:\n    - name: web01\n      disks: [/var/lib/libvirt/images/web01.qcow2]\n",
    );
    const run = await runCliProcess(["validate", "-i", LAB, playbook]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stdout).toBe("");
    expect(diagnostics(run)).toEqual([
      `${playbook}:2:10: hosts: pattern 'hypervisers' matches no host or group in ${LAB}`,
    ]);
  });

  it("reports a YAML syntax error at its line and column, and exits 4", async () => {
    const run = await runCliProcess(["validate", "-i", LAB, SYNTAX_ERROR]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(diagnostics(run)).toEqual([
      `${SYNTAX_ERROR}:3:10: YAML syntax: Nested mappings are not allowed in compact mappings`,
    ]);
  });

  it("reports a playbook file that does not exist as a positioned problem, and exits 4", async () => {
    const run = await runCliProcess(["validate", "-i", LAB, "playbooks/no-such-playbook.yml"]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(diagnostics(run)).toEqual(["playbooks/no-such-playbook.yml:1:1: cannot read: no such file"]);
  });

  it("reports a misspelt key in the inventory at its position with a suggestion, and exits 4", async () => {
    const run = await runCliProcess(["validate", "-i", MISSPELT_CHILDREN, "playbooks/example.yml"]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(diagnostics(run)).toEqual([
      `${MISSPELT_CHILDREN}:4:3: all: unknown key 'childern'; did you mean 'children'?`,
    ]);
  });

  it("reports the problems of the inventory and of the playbook together in one run", async () => {
    const run = await runCliProcess(["validate", "-i", MISSPELT_CHILDREN, SYNTAX_ERROR, MANY_MISTAKES]);
    expect(run.code).toBe(EXIT.config);
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toMatch(STACK_FRAME);
    const files = diagnostics(run).map((line) => line.split(":")[0]);
    expect(new Set(files)).toEqual(new Set([MISSPELT_CHILDREN, SYNTAX_ERROR, MANY_MISTAKES]));
    expect(diagnostics(run)).toContain(
      `${MISSPELT_CHILDREN}:4:3: all: unknown key 'childern'; did you mean 'children'?`,
    );
    expect(diagnostics(run)).toContain(
      `${SYNTAX_ERROR}:3:10: YAML syntax: Nested mappings are not allowed in compact mappings`,
    );
    expect(diagnostics(run)).toContain(
      `${MANY_MISTAKES}:5:5: policy: unknown key 'min_ration'; did you mean 'min_ratio'?`,
    );
    expect(run.stderr).toMatch(
      new RegExp(`^reclaim: ${diagnostics(run).length} problems in the configuration$`, "m"),
    );
  });
});

describe("the command line", () => {
  it("rejects an unknown command with exit code 5 and suggests the one meant", async () => {
    const unknown = await runCliProcess(["frobnicate"]);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.stdout).toBe("");
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);

    const misspelt = await runCliProcess(["valdate", "playbooks/example.yml"]);
    expect(misspelt.code).toBe(EXIT.usage);
    expect(misspelt.stderr).toMatch(/Did you mean validate\?/);
  });

  it("rejects an unknown option with exit code 5", async () => {
    const run = await runCliProcess(["plan", "--frobnicate", "playbooks/example.yml"]);
    expect(run.code).toBe(EXIT.usage);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/unknown option '--frobnicate'/);
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });

  it("rejects an unknown schema name with exit code 5 and names the ones there are", async () => {
    const run = await runCliProcess(["schema", "nope"]);
    expect(run.code).toBe(EXIT.usage);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(
      "reclaim: schema: unknown schema 'nope'; expected one of playbook, inventory, plan, apply-result, report\n",
    );
  });

  it("prints the version from package.json", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    const run = await runCliProcess(["--version"]);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toBe(`${version}\n`);
    expect(run.stderr).toBe("");
  });

  it("prints help that lists every command, and exits 0", async () => {
    const run = await runCliProcess(["--help"]);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(/^Usage: reclaim /);
    for (const command of ["validate", "plan", "apply", "inventory", "schema", "demo"]) {
      expect(run.stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    }
  });
});

describe("reclaim schema", () => {
  it.each([
    ["playbook", "https://reclaim.dev/schemas/playbook.schema.json"],
    ["inventory", "https://reclaim.dev/schemas/inventory.schema.json"],
  ])("prints the %s JSON Schema, which parses and carries its $id", async (name, id) => {
    const run = await runCliProcess(["schema", name]);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stderr).toBe("");
    const schema = JSON.parse(run.stdout) as { $id?: string; $schema?: string };
    expect(schema.$id).toBe(id);
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(run.stdout).toBe(readFileSync(join(ROOT, `schemas/${name}.schema.json`), "utf8"));
  });
});

describe("reclaim inventory --list", () => {
  type Listing = {
    _meta: { hostvars: Record<string, Record<string, unknown>> };
    [group: string]: unknown;
  };

  it("prints the lab inventory as JSON shaped like ansible-inventory --list", async () => {
    const run = await runCliProcess(["inventory", "-i", LAB, "--list"]);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout)).toEqual({
      _meta: {
        hostvars: {
          localhost: { ansible_connection: "local" },
          kvm01: { ansible_user: "reclaim", ansible_host: "127.0.0.2" },
          kvm02: { ansible_user: "reclaim", ansible_host: "127.0.0.3" },
        },
      },
      all: { children: ["ungrouped", "hypervisors"] },
      ungrouped: { hosts: ["localhost"] },
      hypervisors: { children: ["lab"] },
      lab: { hosts: ["kvm01", "kvm02"] },
    });
  });

  it("prints an INI inventory in the same shape, with its groups, children and merged host vars", async () => {
    const run = await runCliProcess(["inventory", "-i", "test/fixtures/inventory/hypervisors.ini", "--list"]);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stderr).toBe("");
    const listed = JSON.parse(run.stdout) as Listing;
    expect(Object.keys(listed._meta.hostvars)).toEqual([
      "localhost",
      "kvm04",
      "kvm01",
      "kvm02",
      "kvm03",
      "nas01",
    ]);
    expect(listed.all).toEqual({ children: ["ungrouped", "hypervisors", "storage"] });
    expect(listed.ungrouped).toEqual({ hosts: ["localhost"] });
    expect(listed.hypervisors).toEqual({ hosts: ["kvm04"], children: ["lab"] });
    expect(listed.lab).toEqual({ hosts: ["kvm01", "kvm02", "kvm03"] });
    expect(listed.storage).toEqual({ hosts: ["nas01", "kvm04"] });
    // A group's vars reach its hosts, a child group's override its parent's, and the port is a number.
    expect(listed._meta.hostvars.kvm02).toMatchObject({
      ansible_user: "reclaim",
      backup_dir: "/var/backups",
      images_dir: "/srv/lab/images",
      ansible_host: "127.0.0.3",
      ansible_port: 2222,
    });
    expect(listed._meta.hostvars.localhost).toEqual({ ansible_user: "admin", backup_dir: "/var/backups" });
  });
});

describe("reclaim plan and apply on a real image", { timeout: 60_000 }, () => {
  function bloatedWorkspace() {
    const dir = scratch();
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 512, writtenMiB: 128, freedMiB: 96 });
    return { dir, image, inventory: writeLocalInventory(dir), playbook: writePlaybook(dir, [image]) };
  }

  it("prints a JSON plan with its version, a rewrite action, an estimate and the steps, changing nothing", async () => {
    const { dir, image, inventory, playbook } = bloatedWorkspace();
    const before = fingerprint(image);
    const files = listing(dir);

    const run = await runCliProcess(["plan", "--json", "-i", inventory, playbook]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(EXIT.ok);
    const plan = JSON.parse(run.stdout);
    expect(plan.version).toBe(1);
    const disk = plan.hosts[0].guests[0].disks[0];
    expect(disk.path).toBe(image);
    expect(disk.action).toBe("rewrite");
    expect(disk.estimate.allocatedAfter).toBeLessThan(disk.estimate.allocatedBefore);
    expect(disk.estimate.reclaim).toBeGreaterThan(0);
    expect(disk.steps.map((s: { kind: string }) => s.kind)).toEqual([
      "convert",
      "copy-attributes",
      "flush",
      "verify",
      "swap",
      "finish-journal",
    ]);

    expect(fingerprint(image)).toEqual(before);
    expect(listing(dir)).toEqual(files);
  });

  it("applies with --json --yes and prints the plan and a result whose disk changed and shrank", async () => {
    const { image, inventory, playbook } = bloatedWorkspace();
    const before = allocated(image);

    const run = await runCliProcess(["apply", "--json", "--yes", "-i", inventory, playbook]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(EXIT.ok);
    const out = JSON.parse(run.stdout);
    expect(Object.keys(out).sort()).toEqual(["plan", "result"]);
    expect(out.plan.hosts[0].guests[0].disks[0].action).toBe("rewrite");
    const disk = out.result.disks[0];
    expect(disk.path).toBe(image);
    expect(disk.status).toBe("changed");
    expect(disk.allocatedAfter).toBeLessThan(disk.allocatedBefore);
    expect(allocated(image)).toBeLessThan(before);
  });

  it("with --diff shows the policy values that decided the disk, and after apply compares estimate and result", async () => {
    const { inventory, playbook } = bloatedWorkspace();
    const size = String.raw`[\d.]+ (?:B|KiB|MiB|GiB)`;

    const plan = await runCliProcess(["plan", "--diff", "-i", inventory, playbook]);
    expect(plan.stderr).toBe("");
    expect(plan.code).toBe(EXIT.ok);
    expect(plan.stdout).toMatch(
      new RegExp(
        String.raw`^ {6}decided by:\n {8}min_reclaimable 16 MiB: would give back ~${size}, enough\n {8}min_ratio 10%: \d+% of the ${size} it allocates, enough → rewrite\n {8}zero none: nothing is freed inside the guest first\n {8}shutdown never: no running guest held the image → no shutdown for it\n`,
        "m",
      ),
    );

    const run = await runCliProcess(["apply", "--yes", "--diff", "-i", inventory, playbook]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toMatch(/^ {6}decided by:$/m);
    expect(run.stdout).toMatch(
      new RegExp(
        String.raw`^changed .*vm\.qcow2: rewritten and verified .*\(estimated ≤ ${size}, got ${size}\)$`,
        "m",
      ),
    );
    expect(run.stdout).toMatch(
      new RegExp(
        String.raw`^reclaimed ${size} in [\d.]+ s; 1 rewritten disk: estimated ≤ ${size}, got ${size}$`,
        "m",
      ),
    );
  });

  it("refuses to apply without --yes when stdin is not a terminal, says to pass --yes, and changes nothing", async () => {
    const { dir, image, inventory, playbook } = bloatedWorkspace();
    const before = fingerprint(image);
    const files = listing(dir);

    const run = await runCliProcess(["apply", "-i", inventory, playbook]);
    expect(run.code).toBe(EXIT.usage);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/pass --yes/);
    expect(run.stderr).not.toMatch(STACK_FRAME);

    expect(fingerprint(image)).toEqual(before);
    expect(listing(dir)).toEqual(files);
  });

  it("reports a host it cannot reach as UNREACHABLE and exits 3, while still planning the local host", async () => {
    const { dir, image } = bloatedWorkspace();
    const inventory = join(dir, "two-hosts.yml");
    writeFileSync(
      inventory,
      [
        "all:",
        "  hosts:",
        "    localhost:",
        "      ansible_connection: local",
        "    faraway:",
        "      ansible_connection: ssh",
        "      ansible_host: 127.0.0.1",
        "      ansible_port: 1",
        "",
      ].join("\n"),
    );
    const playbook = join(dir, "all-hosts.yml");
    writeFileSync(
      playbook,
      `- name: every host\n  hosts: all\n  policy:\n    min_reclaimable: 16MiB\n    zero: none\n  guests:\n    - name: vm\n      disks: [${JSON.stringify(image)}]\n`,
    );

    const text = await runCliProcess(["plan", "-i", inventory, playbook]);
    expect(text.code).toBe(EXIT.unreachable);
    expect(text.stdout).toMatch(/^faraway\s+UNREACHABLE\b/m);
    expect(text.stdout).toMatch(/^localhost$/m);
    expect(text.stdout).toMatch(/rewrite: would give back ~/);
    expect(text.stdout).toMatch(/1 host\(s\) unreachable/);

    const json = await runCliProcess(["plan", "--json", "-i", inventory, playbook]);
    expect(json.code).toBe(EXIT.unreachable);
    const plan = JSON.parse(json.stdout) as {
      hosts: { host: string; unreachable?: string; guests: { disks: { action: string }[] }[] }[];
    };
    const byName = new Map(plan.hosts.map((h) => [h.host, h]));
    expect(byName.get("faraway")?.unreachable).toEqual(expect.any(String));
    expect(byName.get("faraway")?.guests).toEqual([]);
    expect(byName.get("localhost")?.unreachable).toBeUndefined();
    expect(byName.get("localhost")?.guests[0]?.disks[0]?.action).toBe("rewrite");
  });
});

describe("reclaim demo", { timeout: 60_000 }, () => {
  it("runs the whole job, says Demo done, and leaves no temporary directory behind", async () => {
    const tmp = join(scratch(), "tmp");
    mkdirSync(tmp);
    const run = await runCliProcess(["demo"], { TMPDIR: tmp });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toMatch(/reclaim demo, in /);
    expect(run.stdout).toContain(`${tmp}/reclaim-demo-`);
    expect(run.stdout).toMatch(/Demo done/);
    expect(readdirSync(tmp).filter((n) => n.startsWith("reclaim-demo-"))).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });
});

describe("--limit", { timeout: 60_000 }, () => {
  it("plans only the hosts the limit pattern also selects", async () => {
    const dir = scratch();
    const inventory = join(dir, "inventory.yml");
    writeFileSync(
      inventory,
      "all:\n  children:\n    hypervisors:\n      hosts:\n        kvm-a: { ansible_connection: local }\n        kvm-b: { ansible_connection: local }\n",
    );
    const images = ["a", "b"].map((h) => {
      const path = join(dir, `${h}.qcow2`);
      bloatedImage(path, { virtualMiB: 256, writtenMiB: 64, freedMiB: 48 });
      return path;
    });
    const playbook = join(dir, "playbook.yml");
    writeFileSync(
      playbook,
      `- name: limited\n  hosts: hypervisors\n  policy: { min_reclaimable: 16MiB, zero: none }\n  guests:\n    - { name: a, host: kvm-a, disks: [${images[0]}] }\n    - { name: b, host: kvm-b, disks: [${images[1]}] }\n`,
    );
    const run = await runCliProcess(["plan", "--json", "-i", inventory, "--limit", "kvm-b", playbook]);
    expect(run.code).toBe(EXIT.ok);
    expect(JSON.parse(run.stdout).hosts.map((h: { host: string }) => h.host)).toEqual(["kvm-b"]);

    const nothing = await runCliProcess(["plan", "-i", inventory, "--limit", "kvm-z*", playbook]);
    expect(nothing.code).toBe(EXIT.usage);
    expect(nothing.stderr).toMatch(/--limit: pattern 'kvm-z\*' matches no host or group/);
  });
});

describe("reclaim plan --shard", () => {
  it("plans each guest in exactly one of the shards", async () => {
    const dir = workspace("reclaim-cli-shard-").dir;
    const names = Array.from({ length: 8 }, (_, i) => `vm${i}`);
    const playbook = join(dir, "playbook.yml");
    writeFileSync(
      playbook,
      `- name: shards\n  hosts: localhost\n  policy: { zero: none }\n  guests:\n${names.map((n) => `    - { name: ${n}, disks: [${join(dir, `${n}.qcow2`)}] }`).join("\n")}\n`,
    );
    const inventory = writeLocalInventory(dir);
    const planned = async (shard: string) => {
      const run = await runCliProcess(["plan", "--json", "--shard", shard, "-i", inventory, playbook]);
      expect(run.code, run.stderr).toBe(EXIT.ok);
      const plan = JSON.parse(run.stdout) as { hosts: { guests: { name: string }[] }[] };
      return plan.hosts.flatMap((h) => h.guests.map((g) => g.name));
    };
    const shares = await Promise.all(["1/3", "2/3", "3/3"].map(planned));
    expect(shares.flat().sort()).toEqual([...names].sort());
    expect(shares.every((share) => share.length < names.length)).toBe(true);
  });

  it("refuses a shard that is not K/N, before reading anything", async () => {
    const run = await runCliProcess(["plan", "--shard", "0/2", "no-such-playbook.yml"]);
    expect(run.code).toBe(EXIT.usage);
    expect(run.stderr).toContain("--shard: expected K/N with 1 ≤ K ≤ N, such as 2/4, found '0/2'");
  });
});
