/**
 * Hostile names: guest names, disk paths, SSH users, become values and host names that hold
 * spaces, quotes, `$(…)`, backticks, `;`, line breaks, a leading dash, glob characters and
 * non-ASCII text. Each hostile value carries shell code that would leave a file in a markers
 * directory (writable by everyone, so the test user's shell could leave one too) if any shell ever
 * ran it; after every test that directory must be empty. The real path throughout: the built CLI,
 * a real OpenSSH sshd on loopback, the real qemu-img and sudo. A value reclaim cannot use is
 * refused with a clear message (positioned in the file when the file is wrong), never a stack trace.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { allocated, bloatedImage, copySparse, identical } from "../helpers/images.js";
import {
  ensureTestUser,
  giveToTestUser,
  type KeyPair,
  Lab,
  type SshdHost,
  sudoAvailable,
  TEST_USER,
  type TestUser,
  writeKnownHosts,
} from "../lab/sshd.js";

const lab = new Lab();
afterAll(() => lab.close(), 30_000);

let user: TestUser;
let key: KeyPair;
let host: SshdHost;
/** Inventories, playbooks, known_hosts files and pristine copies. */
let work: string;
/** HOME for the CLI: empty, so no ~/.ssh of the runner is read. */
let home: string;
let emptySshConfig: string;
/** Where a hostile value's shell code would leave its file. Short: names hold several of its paths. */
let markers: string;

beforeAll(async () => {
  user = ensureTestUser();
  work = lab.tempDir("reclaim-hostile-");
  home = lab.tempDir("reclaim-hostile-home-");
  markers = lab.tempDir("rh-");
  chmodSync(markers, 0o1777);
  emptySshConfig = join(work, "ssh_config.empty");
  writeFileSync(emptySshConfig, "");
  key = lab.key("id_hostile");
  [host] = await Promise.all([
    lab.sshd({ authorizedKeys: [key.publicKey] }),
    Promise.resolve().then(() => ensureBuilt()),
  ]);
}, 120_000);

afterEach(() => {
  // The whole point: no hostile value was ever run by a shell, here or on the far side.
  expect(readdirSync(markers)).toEqual([]);
});

// ---------------------------------------------------------------------------------------------
// Hostile values

let marks = 0;

function marker(): string {
  return join(markers, `p${++marks}`);
}

/**
 * Text that runs `touch` however a shell would meet it — as bare words, inside double quotes or
 * inside single quotes (each quote breaks out of its own kind; the quotes balance, so the text
 * always parses) — with a leading dash, a glob and non-ASCII around it. It holds '/', so as a path
 * it spans several directories.
 */
function hostile(): string {
  return [
    `-rf $(touch ${marker()})`,
    `\`touch ${marker()}\``,
    `; touch ${marker()} | touch ${marker()};`,
    `'; touch ${marker()}; '`,
    `"; touch ${marker()}; "`,
    "* dísk ü 日本",
  ].join(" ");
}

/**
 * The same for one path component (a file or directory name): no '/', so the marker's path is
 * spelt with printf's octal escapes. Short enough for NAME_MAX with reclaim's prefixes and suffixes.
 */
function hostileName(): string {
  const at = () => `"$(printf '${marker().replaceAll("/", "\\057")}')"`;
  return [`-rf $(touch ${at()})`, `'; touch ${at()}; '`, `"; touch ${at()}; "`, "* dísk ü 日本"].join(" ");
}

// ---------------------------------------------------------------------------------------------
// helpers

let files = 0;
function workFile(name: string): string {
  return join(work, `${++files}-${name}`);
}

/** YAML files are written as JSON (a subset of YAML): every hostile string survives as written. */
function writeYaml(name: string, value: unknown): string {
  const file = workFile(name);
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
  return file;
}

function sshVars(): Record<string, string | number> {
  return {
    ansible_host: host.address,
    ansible_port: host.port,
    ansible_user: TEST_USER,
    ansible_ssh_private_key_file: key.privateKey,
  };
}

function writeInventory(hosts: Record<string, Record<string, unknown>>): string {
  return writeYaml("inventory.yml", { all: { children: { hypervisors: { hosts } } } });
}

function writePlaybook(
  guests: readonly { name: string; disks: readonly string[] }[],
  options: { become?: boolean; keepBackup?: boolean } = {},
): string {
  return writeYaml("playbook.yml", [
    {
      name: "hostile play",
      hosts: "hypervisors",
      become: options.become ?? false,
      policy: {
        min_reclaimable: "16MiB",
        min_ratio: "10%",
        zero: "none",
        convert: { keep_backup: options.keepBackup ?? false },
      },
      guests,
    },
  ]);
}

interface Disk {
  image: string;
  dir: string;
  pristine: string;
}

/**
 * A bloated image (128 MiB virtual, ≈40 MiB allocated, 32 MiB of it free inside) at `path` under
 * `base`, with a pristine copy. Made under a plain name and renamed into place, since qemu-io's
 * option syntax would read some hostile names.
 */
function makeDisk(base: string, path: string, owner: "test-user" | "root" = "test-user"): Disk {
  const image = join(base, path);
  const dir = dirname(image);
  mkdirSync(dir, { recursive: true });
  const plain = workFile("image.qcow2");
  bloatedImage(plain, { virtualMiB: 128, writtenMiB: 40, freedMiB: 32 });
  const pristine = workFile("pristine.qcow2");
  copySparse(plain, pristine);
  renameSync(plain, image);
  // Every directory on the way must let the test user through; the image's own is its to write.
  for (let d = dir; relative(base, d) !== ""; d = dirname(d)) chmodSync(d, 0o755);
  chmodSync(base, 0o755);
  if (owner === "test-user") {
    giveToTestUser(dir);
    giveToTestUser(image);
  } else {
    chmodSync(image, 0o600);
  }
  return { image, dir, pristine };
}

function identity(path: string): [number, number, number] {
  const st = statSync(path);
  return [st.ino, st.mtimeMs, st.size];
}

/** reclaim's own temporary files (temporary image, journal, stopped marker) left in `dir`. */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith(".") && n.includes(".reclaim-"));
}

/** `reclaim ARGS` with a temporary HOME, no ssh-agent and an empty ssh config. */
function reclaim(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return runCliProcess([...args, "--ssh-config", emptySshConfig], {
    HOME: home,
    SSH_AUTH_SOCK: "",
    ...env,
  });
}

function recapLine(run: CliRun, name: string): string {
  return (
    run.stdout.split("\n").find((l) => l.startsWith(name) && /^ *: ok=/.test(l.slice(name.length))) ?? ""
  );
}

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

/** A clear message, not a crash: no stack frame anywhere in the output. */
function expectNoStackTrace(run: CliRun): void {
  expect(`${run.stdout}${run.stderr}`, shown(run)).not.toContain("    at ");
}

// ---------------------------------------------------------------------------------------------

describe("hostile disk paths and host names over SSH", { timeout: 60_000 }, () => {
  it("plans and rewrites images whose directories and names are shell code, and runs none of it", async () => {
    const base = lab.tempDir("reclaim-hostile-images-");
    const disks = [
      makeDisk(base, `${hostile()}/${hostileName()}.qcow2`),
      makeDisk(base, "--help/-rf.qcow2"),
      makeDisk(base, "glob/*.qcow2"),
    ];
    // What `*.qcow2` would match if a shell ever expanded it: they must not be touched.
    const decoys = ["a.qcow2", "b.qcow2"].map((n) => join(base, "glob", n));
    for (const decoy of decoys) {
      execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", decoy, "64M"]);
      giveToTestUser(decoy);
    }
    const decoysBefore = decoys.map(identity);
    const before = disks.map((d) => allocated(d.image));
    const hostName = `kvm ${hostile()}`;
    const inventory = writeInventory({ [hostName]: sshVars() });
    const playbook = writePlaybook([{ name: "vm", disks: disks.map((d) => d.image) }]);
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);
    const common = ["-i", inventory, playbook, "--known-hosts", knownHosts];

    const plan = await reclaim(["plan", "--detailed-exitcode", ...common]);
    expect(plan.code, shown(plan)).toBe(2);
    expect(plan.stderr).toBe("");
    expect(plan.stdout.split("\n")[0]).toBe(hostName);
    for (const d of disks) expect(plan.stdout).toContain(`    ${d.image}\n      rewrite: would give back ~`);
    expect(plan.stdout).toMatch(/Plan: 3 disks to rewrite/);
    expectNoStackTrace(plan);

    const run = await reclaim(["apply", "--yes", ...common]);
    expect(run.code, shown(run)).toBe(0);
    expect(run.stderr).toBe("");
    expect(recapLine(run, hostName), shown(run)).toMatch(/ok=0 changed=3 skipped=0 failed=0 unreachable=0/);
    for (const [i, d] of disks.entries()) {
      expect(allocated(d.image)).toBeLessThan((before[i] as number) / 2);
      expect(identical(d.pristine, d.image), d.image).toBe(true);
      const st = statSync(d.image);
      expect([st.uid, st.gid]).toEqual([user.uid, user.gid]);
      expect(leftovers(d.dir)).toEqual([]);
    }
    expect(decoys.map(identity)).toEqual(decoysBefore);
    expect(host.logs()).toContain(`Accepted publickey for ${TEST_USER}`);
    expectNoStackTrace(run);

    // The second run reads the same names back, finds its own (absent) leftovers, changes nothing.
    const after = disks.map((d) => identity(d.image));
    const second = await reclaim(["apply", "--yes", ...common]);
    expect(second.code, shown(second)).toBe(0);
    expect(second.stdout).toMatch(/No changes/);
    expect(recapLine(second, hostName)).toMatch(/ok=3 changed=0/);
    expect(disks.map((d) => identity(d.image))).toEqual(after);
  });

  it("rewrites a root-owned image in a hostile directory through sudo, with a hostile become password and become user", async () => {
    if (!sudoAvailable || !user.sudo) expect.fail("sudo is not installed: the become test cannot run");
    const base = lab.tempDir("reclaim-hostile-become-");
    const disk = makeDisk(base, `${hostile()}/${hostileName()}.qcow2`, "root");
    const before = allocated(disk.image);
    // sudo reads no password for the test user (NOPASSWD), so the password's lines go through
    // reclaim's own skip-to-marker script: they must stay data there too, and out of the commands' input.
    const password = `pw ${hostile()}\n$(touch ${marker()})`;
    // reclaim has no become user (it becomes root): the variable is carried along, never used.
    const inventory = writeInventory({
      kvm: sshVars(),
    });
    const playbook = writePlaybook([{ name: "vm", disks: [disk.image] }], { become: true });
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);

    const run = await reclaim(["apply", "--yes", "-i", inventory, playbook, "--known-hosts", knownHosts], {
      RECLAIM_BECOME_PASSWORD: password,
    });
    expect(run.code, shown(run)).toBe(0);
    expect(recapLine(run, "kvm"), shown(run)).toMatch(/changed=1 skipped=0 failed=0 unreachable=0/);
    expect(allocated(disk.image)).toBeLessThan(before / 2);
    expect(identical(disk.pristine, disk.image)).toBe(true);
    const st = statSync(disk.image);
    expect([st.uid, st.gid, (st.mode & 0o777).toString(8)]).toEqual([0, 0, "600"]);
    expect(leftovers(disk.dir)).toEqual([]);
    expect(`${run.stdout}${run.stderr}`).not.toContain(password);
    expectNoStackTrace(run);
  });

  it("reports a hostile SSH user as an authentication failure of that host, and touches nothing", async () => {
    const base = lab.tempDir("reclaim-hostile-user-");
    const disk = makeDisk(base, "vm.qcow2");
    const untouched = identity(disk.image);
    const users = {
      kvm1: `root ${hostile()}`,
      kvm2: `-oProxyCommand=touch ${marker()}`,
    };
    const inventory = writeInventory(
      Object.fromEntries(Object.entries(users).map(([name, u]) => [name, { ...sshVars(), ansible_user: u }])),
    );
    const playbook = writePlaybook([{ name: "vm", disks: [disk.image] }]);
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);
    const logFrom = host.logs().length;

    const run = await reclaim(["apply", "--yes", "-i", inventory, playbook, "--known-hosts", knownHosts]);
    expect(run.code, shown(run)).toBe(3);
    for (const name of ["kvm1", "kvm2"] as const) {
      expect(run.stdout, shown(run)).toContain(
        `${name}  UNREACHABLE: authentication to ${users[name]}@${host.address}:${host.port} failed`,
      );
    }
    for (const name of Object.keys(users)) {
      expect(recapLine(run, name)).toMatch(/changed=0 skipped=0 failed=0 unreachable=1/);
    }
    expect(host.logs().slice(logFrom)).not.toContain("Accepted publickey");
    expect(identity(disk.image)).toEqual(untouched);
    expectNoStackTrace(run);
  });

  it("refuses hostile host names and addresses as unreachable hosts, and connects nowhere else instead", async () => {
    const base = lab.tempDir("reclaim-hostile-hosts-");
    const disk = makeDisk(base, "vm.qcow2");
    const untouched = identity(disk.image);
    const withKey = { ansible_ssh_private_key_file: key.privateKey, ansible_user: TEST_USER };
    // Each value holds a character no resolver accepts: none of them is ever looked up in the DNS.
    const hosts: Record<string, Record<string, unknown>> = {
      // The inventory name is the address when ansible_host is not set.
      [hostile()]: withKey,
      [`--help $(touch ${marker()})`]: withKey,
      dash: { ...withKey, ansible_host: `-oProxyCommand=touch ${marker()} $(touch ${marker()})` },
    };
    const inventory = writeInventory(hosts);
    const playbook = writePlaybook([{ name: "vm", disks: [disk.image] }]);
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);
    const knownBefore = readFileSync(knownHosts, "utf8");
    const logFrom = host.logs().length;

    // Even told to record new host keys, nothing may be recorded under a name that is not one.
    const run = await reclaim([
      "apply",
      "--yes",
      "-i",
      inventory,
      playbook,
      "--known-hosts",
      knownHosts,
      "--accept-new-host-keys",
    ]);
    expect(run.code, shown(run)).toBe(3);
    for (const name of Object.keys(hosts)) {
      expect(run.stdout, shown(run)).toContain(`${name}  UNREACHABLE: `);
      expect(recapLine(run, name), shown(run)).toMatch(/changed=0 skipped=0 failed=0 unreachable=1/);
    }
    expect(run.stdout).not.toContain("\0");
    expect(readFileSync(knownHosts, "utf8")).toBe(knownBefore);
    expect(host.logs().slice(logFrom)).not.toMatch(/Accepted publickey|Connection from/);
    expect(identity(disk.image)).toEqual(untouched);
    expectNoStackTrace(run);
  });

  it("refuses control characters in addresses and users, and any become user but root, each at its line and column, before contacting any host", async () => {
    const base = lab.tempDir("reclaim-hostile-vars-");
    const disk = makeDisk(base, "vm.qcow2");
    const untouched = identity(disk.image);
    const withKey = { ansible_ssh_private_key_file: key.privateKey, ansible_user: TEST_USER };
    const inventory = writeInventory({
      newline: { ...withKey, ansible_host: `${host.address}\nProxyCommand touch ${marker()}` },
      // A C string ends at the NUL: the resolver alone would read the address of the lab's sshd.
      nul: { ...withKey, ansible_host: `${host.address}\0$(touch ${marker()})`, ansible_port: host.port },
      user: { ...sshVars(), ansible_user: `${TEST_USER}\n$(touch ${marker()})` },
      becomer: { ...sshVars(), ansible_become: true, ansible_become_user: `root ${hostile()}` },
    });
    const playbook = writePlaybook([{ name: "vm", disks: [disk.image] }]);
    const logFrom = host.logs().length;

    const run = await reclaim(["apply", "--yes", "-i", inventory, playbook]);
    expect(run.code, shown(run)).toBe(4);
    const out = `${run.stdout}${run.stderr}`;
    expect(out.match(/must not hold control characters/g)?.length, shown(run)).toBe(3);
    expect(out).toMatch(/reclaim only becomes root/);
    expect(out.match(new RegExp(`${escapeRegExp(inventory)}:\\d+:\\d+`, "g"))?.length).toBeGreaterThanOrEqual(
      4,
    );
    expect(out).not.toContain("\0");
    expect(host.logs().slice(logFrom)).not.toMatch(/Accepted publickey|Connection from/);
    expect(identity(disk.image)).toEqual(untouched);
    expectNoStackTrace(run);
  });

  it("reads hostile values from an INI inventory as data too", async () => {
    const base = lab.tempDir("reclaim-hostile-ini-");
    const disk = makeDisk(base, "vm.qcow2");
    const untouched = identity(disk.image);
    const inventory = workFile("inventory.ini");
    writeFileSync(
      inventory,
      [
        "[hypervisors]",
        `kvm1 ansible_host="-oProxyCommand=touch ${marker()} $(touch ${marker()})" ansible_ssh_private_key_file=${key.privateKey}`,
        `kvm2 ansible_host=${host.address} ansible_port=${host.port} ansible_user='$(touch ${marker()}) \`touch ${marker()}\`' ansible_ssh_private_key_file=${key.privateKey}`,
        "",
      ].join("\n"),
    );
    const playbook = writePlaybook([{ name: "vm", disks: [disk.image] }]);
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);

    const run = await reclaim(["apply", "--yes", "-i", inventory, playbook, "--known-hosts", knownHosts]);
    expect(run.code, shown(run)).toBe(3);
    expect(run.stdout).toMatch(/^kvm1 {2}UNREACHABLE: -oProxyCommand=touch .*ENOTFOUND/m);
    expect(run.stdout).toMatch(/^kvm2 {2}UNREACHABLE: authentication to \$\(touch .* failed/m);
    expect(identity(disk.image)).toEqual(untouched);
    expectNoStackTrace(run);
  });
});

// ---------------------------------------------------------------------------------------------

describe("hostile values the configuration refuses", { timeout: 30_000 }, () => {
  it("refuses hostile guest names, each at its line and column, before contacting any host", async () => {
    const names = [
      "--help",
      "-rf",
      `vm $(touch ${marker()})`,
      `vm\`touch ${marker()}\``,
      `vm;touch ${marker()}`,
      `vm\ntouch ${marker()}`,
      `vm'q'"dq"`,
      "vm*",
      "dísk-ü-日本",
    ];
    const inventory = writeInventory({ kvm: sshVars() });
    // Each guest its own disk, so that its name is the only problem on its line.
    const playbook = writePlaybook(names.map((name, i) => ({ name, disks: [`/srv/vm${i}.qcow2`] })));
    const text = readFileSync(playbook, "utf8").split("\n");
    const knownHosts = writeKnownHosts(workFile("known_hosts"), [host]);
    const logFrom = host.logs().length;

    for (const command of [["plan"], ["apply", "--yes"]]) {
      const run = await reclaim([...command, "-i", inventory, playbook, "--known-hosts", knownHosts]);
      expect(run.code, shown(run)).toBe(4);
      expect(run.stdout).toBe("");
      for (const name of names) {
        const line = text.findIndex((l) => l.includes(`"name": ${JSON.stringify(name)}`)) + 1;
        expect(line).toBeGreaterThan(0);
        const reported = run.stderr.split("\n").filter((l) => l.startsWith(`${playbook}:${line}:`));
        expect(reported, shown(run)).toHaveLength(1);
        expect(reported[0]).toMatch(/^\S+:\d+:\d+: guests\.name: expected a guest name of letters, digits/);
        expect(reported[0]).toContain(`found string ${JSON.stringify(name)}`);
      }
      expect(run.stderr).toContain(`reclaim: ${names.length} problems in the configuration`);
      expectNoStackTrace(run);
    }
    expect(host.logs().slice(logFrom)).not.toContain("Connection from");
  });

  it("refuses hostile disk paths that are not absolute or hold a line break, and a hostile become value", async () => {
    const paths = [
      `-rf`,
      `--help $(touch ${marker()})`,
      `/srv/vm\n$(touch ${marker()}).qcow2`,
      `/srv/vm\0.qcow2`,
    ];
    const inventory = writeInventory({ kvm: { ...sshVars(), ansible_become: `$(touch ${marker()})` } });
    const playbook = writeYaml("playbook.yml", [
      {
        name: "hostile play",
        hosts: "hypervisors",
        become_user: `root $(touch ${marker()})`,
        guests: [{ name: "vm", disks: paths }],
      },
    ]);
    const logFrom = host.logs().length;

    const run = await reclaim(["apply", "--yes", "-i", inventory, playbook]);
    expect(run.code, shown(run)).toBe(4);
    const at = (file: string) => new RegExp(`^${escapeRegExp(file)}:\\d+:\\d+: `, "m");
    expect(run.stderr).toMatch(at(inventory));
    expect(run.stderr).toContain(
      `ansible_become: must be true or false (or yes/no, on/off), found string "$(touch`,
    );
    expect(run.stderr).toMatch(at(playbook));
    expect(run.stderr).toContain("unknown key 'become_user'");
    for (const p of paths.slice(0, 2))
      expect(run.stderr).toContain(
        `expected an absolute path such as /var/lib/libvirt/images/web01.qcow2, found string ${JSON.stringify(p)}`,
      );
    for (const p of paths.slice(2))
      expect(run.stderr).toContain(
        `a disk path must not contain a NUL or a line break, found string ${JSON.stringify(p)}`,
      );
    expect(host.logs().slice(logFrom)).not.toContain("Connection from");
    expectNoStackTrace(run);
  });
});

// ---------------------------------------------------------------------------------------------

describe("hostile disk paths and host names on the local transport", { timeout: 60_000 }, () => {
  it("saves a plan under a hostile name, carries it out on hostile paths, keeps a backup, and runs none of it", async () => {
    const base = lab.tempDir("reclaim-hostile-local-");
    const disks = [makeDisk(base, `${hostile()}/${hostileName()}.qcow2`), makeDisk(base, "--help/-rf.qcow2")];
    const originalInodes = disks.map((d) => statSync(d.image).ino);
    const hostName = `local ${hostile()}`;
    const inventory = writeInventory({ [hostName]: { ansible_connection: "local" } });
    const playbook = writePlaybook([{ name: "vm", disks: disks.map((d) => d.image) }], { keepBackup: true });
    const savedDir = join(base, hostileName());
    mkdirSync(savedDir);
    const saved = join(savedDir, `plan ${hostileName()}.json`);

    const json = await reclaim(["plan", "--json", "-i", inventory, playbook]);
    expect(json.code, shown(json)).toBe(0);
    const planned = JSON.parse(json.stdout) as {
      hosts: { host: string; guests: { disks: { path: string; action: string }[] }[] }[];
    };
    expect(planned.hosts.map((h) => h.host)).toEqual([hostName]);
    expect(planned.hosts[0]?.guests[0]?.disks.map((d) => [d.path, d.action])).toEqual(
      disks.map((d) => [d.image, "rewrite"]),
    );

    const plan = await reclaim(["plan", "-i", inventory, playbook, "--out", saved]);
    expect(plan.code, shown(plan)).toBe(0);
    expect(plan.stdout).toContain(`Saved the plan to ${saved}`);
    expectNoStackTrace(plan);

    const applied = await reclaim(["apply", saved]);
    expect(applied.code, shown(applied)).toBe(0);
    expect(applied.stderr).toBe("");
    expect(recapLine(applied, hostName), shown(applied)).toMatch(/ok=0 changed=2 skipped=0 failed=0/);
    for (const [i, d] of disks.entries()) {
      expect(identical(d.pristine, d.image), d.image).toBe(true);
      expect(leftovers(d.dir)).toEqual([]);
      // keep_backup: the original stays as a hard link beside the image, under its own name.
      const backups = readdirSync(d.dir).filter((n) =>
        n.startsWith(`${d.image.slice(d.dir.length + 1)}.reclaim-backup-`),
      );
      expect(backups).toHaveLength(1);
      const backup = join(d.dir, backups[0] as string);
      expect(statSync(backup).ino).toBe(originalInodes[i]);
      expect(identical(backup, d.image)).toBe(true);
    }
    expectNoStackTrace(applied);

    const again = await reclaim(["apply", "--yes", "-i", inventory, playbook]);
    expect(again.code, shown(again)).toBe(0);
    expect(again.stdout).toMatch(/No changes/);
    expect(recapLine(again, hostName)).toMatch(/ok=2 changed=0/);
  });

  it("refuses hostile guest names on a local host as it does over SSH", async () => {
    const inventory = writeInventory({ "--help": { ansible_connection: "local" } });
    const names = [`--help`, `vm $(touch ${marker()})`, `vm\ntouch ${marker()}`];
    const playbook = writePlaybook(names.map((name, i) => ({ name, disks: [`/srv/vm${i}.qcow2`] })));
    const run = await reclaim(["apply", "--yes", "-i", inventory, playbook]);
    expect(run.code, shown(run)).toBe(4);
    for (const name of names) expect(run.stderr).toContain(`found string ${JSON.stringify(name)}`);
    expectNoStackTrace(run);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
