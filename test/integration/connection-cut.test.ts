/**
 * The SSH connection to a hypervisor cut while reclaim works there, on the real path: the built CLI,
 * real OpenSSH sshd hosts, real qcow2 images. A conversion runs detached on the host, so a cut
 * connection must not stop it; the run reconnects, takes the disk's lock again and reattaches, or
 * says that the next run finishes it. Either way the original is never lost and nothing is left.
 *
 * A guest's connection goes through its hypervisor's, so the same cut during a zero-fill inside a
 * running guest (a real VM) ends the guest step: the fill stops by itself, keeps the guest's
 * reserve and leaves no fill file, and the next run completes.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, ensureBuilt, startCli } from "../helpers/cli.js";
import { allocated, copySparse, identical, MiB, randomImage } from "../helpers/images.js";
import { ensureGuestArtifacts } from "../lab/guest/build.js";
import { type DataImage, makeDataImage } from "../lab/guest/data-image.js";
import { bootGuest, type GuestVm } from "../lab/guest/vm.js";
import { IP } from "../lab/netns.js";
import { isAlive, type ProcInfo, processesMentioning, procInfo, sleep, terminate } from "../lab/proc.js";
import {
  giveToTestUser,
  type KeyPair,
  killSessions,
  Lab,
  registerCleanup,
  type SshdHost,
  sessionPids,
  TEST_USER,
} from "../lab/sshd.js";

const lab = new Lab();
afterAll(() => lab.close(), 60_000);

let key: KeyPair;
/** Inventories, playbooks, ssh configs, known_hosts and the pristine image. */
let work: string;
/** HOME for the CLI: empty, so no ~/.ssh of whoever runs the tests is read. */
let home: string;
/** ~1.2 GiB of random data (a conversion of a few seconds here), a quarter of it freed inside. */
let pristine: string;

beforeAll(async () => {
  key = lab.key("id_cut");
  work = lab.tempDir("reclaim-cut-");
  home = lab.tempDir("reclaim-cut-home-");
  // In memory: made and read again quickly; the copies converted are on disk, as images are.
  const shm = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "reclaim-cut-"));
  const unregister = registerCleanup({ kind: "dir", path: shm });
  lab.defer(() => {
    rmSync(shm, { recursive: true, force: true });
    unregister();
  });
  pristine = join(shm, "pristine.qcow2");
  ensureBuilt();
  randomImage(pristine, 1280, 4096);
}, 180_000);

// ---------------------------------------------------------------------------------------------
// helpers

let files = 0;
function workFile(name: string, text: string): string {
  const path = join(work, `${++files}-${name}`);
  writeFileSync(path, text);
  return path;
}

interface Disk {
  dir: string;
  image: string;
  temp: string;
}

/** A copy of the pristine image in its own directory, both the test user's. */
function newDisk(): Disk {
  const dir = lab.tempDir("reclaim-cut-disk-");
  giveToTestUser(dir);
  const image = join(dir, "vm.qcow2");
  copySparse(pristine, image);
  giveToTestUser(image);
  // Whatever a failed test leaves running on this image (a detached conversion) ends with it.
  lab.defer(async () => {
    await terminate(mentioning(dir), 1000);
  });
  return { dir, image, temp: join(dir, ".vm.qcow2.reclaim-tmp") };
}

function mentioning(text: string): ProcInfo[] {
  return processesMentioning(text)
    .map((pid) => procInfo(pid))
    .filter((p): p is ProcInfo => p !== undefined && p.pid !== process.pid);
}

/** The `qemu-img convert` processes writing `temp` (not their wrapping shell). */
function converters(temp: string): ProcInfo[] {
  return mentioning(temp).filter((p) => {
    try {
      return /(^|\/)qemu-img\0convert\0/.test(readFileSync(`/proc/${p.pid}/cmdline`, "latin1"));
    } catch {
      return false;
    }
  });
}

function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes(".reclaim-"));
}

interface Files {
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** The lab host as the inventory's `kvm`, reached as the test user with the test key. */
function inventoryFor(host: SshdHost): string {
  return workFile(
    "inventory.yml",
    `all:\n  hosts:\n    kvm:\n      ansible_host: ${host.address}\n      ansible_port: ${host.port}\n      ansible_user: ${TEST_USER}\n      ansible_ssh_private_key_file: ${key.privateKey}\n`,
  );
}

/** Inventory, playbook, known_hosts and ssh config for one image on one lab host. */
function filesFor(host: SshdHost, disk: Disk, sshConfig = ""): Files {
  const inventory = inventoryFor(host);
  const playbook = workFile(
    "playbook.yml",
    `- name: cut\n  hosts: kvm\n  policy: { min_reclaimable: 16MiB, min_ratio: 10%, zero: none }\n  guests:\n    - name: vm\n      disks: [${JSON.stringify(disk.image)}]\n`,
  );
  const knownHosts = workFile("known_hosts", host.knownHostsLines());
  const config = workFile("ssh_config", sshConfig);
  return {
    args: ["apply", "--yes", "-i", inventory, playbook, "--known-hosts", knownHosts, "--ssh-config", config],
    env: { HOME: home, SSH_AUTH_SOCK: "" },
  };
}

interface Running {
  done: Promise<CliRun>;
  /** What the CLI printed so far. */
  output(): string;
  /** The run's end, bounded: past `ms` the CLI is killed and the test fails. */
  end(ms: number): Promise<CliRun>;
}

function start(f: Files): Running {
  const { child, done } = startCli(f.args, f.env);
  let out = "";
  child.stdout?.on("data", (c: string) => {
    out += c;
  });
  let ended = false;
  void done.then(() => {
    ended = true;
  });
  // A test that fails half-way does not leave the CLI running.
  lab.defer(() => {
    if (!ended) child.kill("SIGKILL");
  });
  return {
    done,
    output: () => out,
    async end(ms) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), ms);
      });
      const first = await Promise.race([done, late]);
      clearTimeout(timer);
      if (first !== "late") return first;
      child.kill("SIGKILL");
      throw new Error(`reclaim did not end within ${ms} ms:\n${out}`);
    },
  };
}

function run(f: Files, ms: number): Promise<CliRun> {
  return start(f).end(ms);
}

/** Polls `condition` every 20 ms; fails after `timeoutMs`, or at once when the CLI ended first. */
async function waitFor(
  what: string,
  condition: () => boolean,
  timeoutMs: number,
  cli?: Running,
): Promise<void> {
  let ended: CliRun | undefined;
  void cli?.done.then((r) => {
    ended = r;
  });
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (ended) throw new Error(`reclaim ended before ${what}:\n${shown(ended)}`);
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}\n${cli?.output() ?? ""}`);
    await sleep(20);
  }
}

function shown(r: CliRun): string {
  return `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout.trimEnd()}\n--- stderr\n${r.stderr.trimEnd()}`;
}

function recap(r: CliRun): string {
  return r.stdout.split("\n").find((l) => /^kvm\s+: ok=/.test(l)) ?? "";
}

/** How the reattaching run found the conversion (for the log of the trials). */
function takenOver(r: CliRun): string {
  if (/conversion still runs on the host/.test(r.stdout)) return "reattached to the running conversion";
  if (/conversion finished on the host/.test(r.stdout)) return "took over the finished conversion";
  return "did neither";
}

function logins(host: SshdHost): number {
  return host.logs().match(/Accepted publickey for /g)?.length ?? 0;
}

/** The conversion is under way: its temporary image has grown past a few clusters of data. */
function converting(disk: Disk): () => boolean {
  return () => existsSync(disk.temp) && statSync(disk.temp).size > 32 * MiB;
}

/** The second run finds nothing to do, and leaves the image as it is. */
async function expectNoChange(f: Files, disk: Disk): Promise<void> {
  const before = statSync(disk.image);
  const again = await run(f, 60_000);
  expect(again.code, shown(again)).toBe(0);
  expect(again.stdout).toMatch(/No changes/);
  expect(recap(again)).toMatch(/ok=1 changed=0/);
  const after = statSync(disk.image);
  expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
}

// ---------------------------------------------------------------------------------------------

describe("the hypervisor's connection cut during a conversion", { timeout: 240_000 }, () => {
  it("a conversion survives its SSH connection being cut, and the same run reattaches and finishes", async () => {
    const host = await lab.sshd({ authorizedKeys: [key.publicKey] });
    const disk = newDisk();
    const f = filesFor(host, disk);
    const originalIno = statSync(disk.image).ino;

    const cli = start(f);
    await waitFor("the conversion writes its temporary image", converting(disk), 60_000, cli);
    const workers = converters(disk.temp);
    expect(workers, "the detached qemu-img convert").toHaveLength(1);
    const loginsBefore = logins(host);

    // Every session process of the server dies: the runner's connection drops, as when sshd is
    // killed or the host's side of the link goes.
    const sessions = sessionPids(host);
    await killSessions(host);
    // (The runner may be back already, on a new session: only the old ones are looked at.)
    expect(sessionPids(host).filter((pid) => sessions.includes(pid))).toEqual([]);
    // The conversion is no child of the session: it goes on (or has just finished, by itself).
    const exitFile = join(disk.dir, ".vm.qcow2.reclaim-convert.exit");
    const outlived =
      workers.every(isAlive) || (existsSync(exitFile) && readFileSync(exitFile, "utf8").trim() === "0");
    expect(outlived, "qemu-img convert outlived the session").toBe(true);

    const r = await cli.end(120_000);
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout).toMatch(/reattached after the connection was lost/);
    expect(recap(r), shown(r)).toMatch(/ok=0 changed=1 skipped=0 failed=0 unreachable=0/);
    // It really came back over a new connection.
    expect(logins(host)).toBeGreaterThan(loginsBefore);
    expect(statSync(disk.image).ino).not.toBe(originalIno);
    expect(identical(pristine, disk.image)).toBe(true);
    expect(allocated(disk.image)).toBeLessThan(allocated(pristine));
    expect(leftovers(disk.dir)).toEqual([]);
    expect(converters(disk.temp)).toEqual([]);

    console.info(`sessions cut; the run ${takenOver(r)}`);

    await expectNoChange(f, disk);
  });

  it("a link dropped without a word during conversion: the run reconnects and finishes, or the next run does", async () => {
    const net = await lab.netns(`cut${process.pid.toString(36)}`.slice(0, 8));
    // The old connection's lock holder keeps the disk's lock until its input ends, that is until
    // sshd gives the old connection up. Here the client's FIN, sent again once the link is back,
    // usually tells it first (the test took as long without these two lines); ClientAlive (2 s × 2
    // unanswered) bounds it all the same should that FIN be lost, so that the reattach never waits
    // for the holder's own 60 s silence limit and the test stays short.
    const host = await lab.sshd({
      netns: net.jumpNs,
      address: net.jumpAddress,
      authorizedKeys: [key.publicKey],
      extraConfig: ["ClientAliveInterval 2", "ClientAliveCountMax 2"],
    });
    const disk = newDisk();
    // The client notices the silence within ~3 s (3 unanswered keepalives, 1 s apart), and each
    // reconnect attempt gives up on an unanswered SYN after 3 s.
    const f = filesFor(host, disk, "Host *\n  ServerAliveInterval 1\n  ConnectTimeout 3\n");
    const original = statSync(disk.image);
    // The jump namespace's end of its link to the root namespace (netns.ts names it so).
    const link = `rcl-${net.name}-jr`;
    const setLink = (state: "up" | "down") => net.exec(net.jumpNs, IP, ["link", "set", link, state]);
    lab.defer(() => {
      try {
        setLink("up");
      } catch {
        // The namespace is gone already.
      }
    });

    const cli = start(f);
    await waitFor("the conversion writes its temporary image", converting(disk), 60_000, cli);
    const loginsBefore = logins(host);
    // No FIN, no RST, no ICMP: packets to and from the server simply vanish.
    setLink("down");
    const downAt = Date.now();
    await waitFor(
      "the runner notices the silence",
      () => /lost sight of the conversion/.test(cli.output()),
      30_000,
      cli,
    );
    const noticedAfterMs = Date.now() - downAt;
    // Down a little longer: the first reconnect attempt meets the silence too.
    await sleep(3_000);
    // In the outage, the original is the very same file.
    const during = statSync(disk.image);
    expect([during.ino, during.mtimeMs, during.size]).toEqual([
      original.ino,
      original.mtimeMs,
      original.size,
    ]);
    setLink("up");
    const upAfterMs = Date.now() - downAt;

    const first = await cli.end(180_000);
    if (first.code === 0) {
      expect(first.stdout).toMatch(/reattached after the connection was lost/);
      expect(recap(first), shown(first)).toMatch(/changed=1 skipped=0 failed=0 unreachable=0/);
      expect(logins(host), "a new connection").toBeGreaterThan(loginsBefore);
    } else {
      // The reconnect window was missed: the run says where the work stands.
      expect(first.stdout, shown(first)).toMatch(
        /the conversion continues on the host and the next run finishes it/,
      );
      expect(identical(pristine, disk.image)).toBe(true);
      const next = await run(f, 120_000);
      expect(next.code, shown(next)).toBe(0);
      expect(recap(next), shown(next)).toMatch(/changed=1/);
    }
    console.info(
      `link down for ${upAfterMs} ms, noticed after ${noticedAfterMs} ms; first run exit ${first.code}${first.code === 0 ? `: ${takenOver(first)}` : ", the next run finished"}`,
    );
    expect(identical(pristine, disk.image)).toBe(true);
    expect(allocated(disk.image)).toBeLessThan(allocated(pristine));
    expect(leftovers(disk.dir)).toEqual([]);
    expect(converters(disk.temp)).toEqual([]);

    await expectNoChange(f, disk);
  });
});

// ---------------------------------------------------------------------------------------------

describe("the hypervisor's connection cut during a zero-fill in its guest", { timeout: 240_000 }, () => {
  let hypervisor: SshdHost;
  let data: DataImage;
  let guest: GuestVm;

  beforeAll(async () => {
    const artifacts = await ensureGuestArtifacts();
    const dir = lab.tempDir("reclaim-cut-guest-");
    giveToTestUser(dir);
    // A fill of ~600 MiB (the free space less the 10% reserve): several seconds under emulation.
    [data, hypervisor] = await Promise.all([
      makeDataImage(join(dir, "fill.qcow2"), { sizeMiB: 768, fillMiB: 320, deleteMiB: 288 }),
      lab.sshd({ authorizedKeys: [key.publicKey] }),
    ]);
    giveToTestUser(data.path);
    guest = await bootGuest({
      dataImage: data.path,
      discard: "ignore",
      authorizedKey: key.publicKey,
      identityFile: key.privateKey,
      lab,
      artifacts,
      name: "cutfill",
    });
  }, 180_000);

  /** The play: fill /data of the running guest, reached through the hypervisor's connection. */
  function guestFiles(): Files {
    const inventory = inventoryFor(hypervisor);
    const playbook = workFile(
      "guest-playbook.yml",
      `- name: cut fill\n  hosts: kvm\n  policy: { min_reclaimable: 16MiB, zero: fill, fill_reserve: 10%, shutdown: never }\n  vm: { manager: guest }\n  guests:\n    - name: cutfill\n      disks: [${JSON.stringify(data.path)}]\n      ssh: { host: 127.0.0.1, port: ${guest.sshPort}, user: root }\n`,
    );
    const knownHosts = workFile(
      "known_hosts",
      hypervisor.knownHostsLines() + readFileSync(guest.knownHostsFile, "utf8"),
    );
    const config = workFile("ssh_config", `Host *\n  IdentityFile ${key.privateKey}\n  IdentitiesOnly yes\n`);
    return {
      args: [
        "apply",
        "--yes",
        "-i",
        inventory,
        playbook,
        "--known-hosts",
        knownHosts,
        "--ssh-config",
        config,
      ],
      env: { HOME: home, SSH_AUTH_SOCK: "" },
    };
  }

  interface GuestState {
    fillFile: boolean;
    /** Fill scripts still running in the guest. */
    fills: number;
    availKiB: number;
    sizeKiB: number;
  }

  /** Looked at directly (not through the hypervisor), with the real ssh client. */
  async function inGuest(): Promise<GuestState> {
    const r = await guest.ssh(
      // The fill's shell (and its dd, named {dd} by busybox); not busybox timeout's watcher, which
      // outlives the command by up to a second.
      "ls -a /data; echo FILLS=$(ps | grep -cE '^ *[0-9]+ +root +([{]dd[}] )?sh -c f='); df -P -k /data",
      20_000,
    );
    const df = /\s(\d+)\s+\d+\s+(\d+)\s+\d+%\s+\/data/.exec(r.stdout);
    if (r.code !== 0 || !df) throw new Error(`cannot look into the guest: ${r.code} ${r.stdout} ${r.stderr}`);
    return {
      fillFile: r.stdout.includes(".reclaim-zero-fill"),
      fills: Number(/FILLS=(\d+)/.exec(r.stdout)?.[1] ?? Number.NaN),
      availKiB: Number(df[2]),
      sizeKiB: Number(df[1]),
    };
  }

  /** Looks into the guest until no fill file and no fill is left (bounded); every look, in order. */
  async function untilQuiet(timeoutMs: number): Promise<GuestState[]> {
    const samples = [await inGuest()];
    const deadline = Date.now() + timeoutMs;
    for (let s = samples[0] as GuestState; (s.fillFile || s.fills > 0) && Date.now() < deadline; ) {
      await sleep(300);
      s = await inGuest();
      samples.push(s);
    }
    return samples;
  }

  it("a fill cut off from its runner stops by itself and removes its file, the guest keeps its reserve and files, and the next run completes", async () => {
    const f = guestFiles();
    const allocatedBefore = allocated(data.path);
    const cli = start(f);
    // The guest's zeros reach its image: the file grows on the host while the fill runs.
    await waitFor(
      "the fill writes into the guest's image",
      () => allocated(data.path) > allocatedBefore + 64 * MiB,
      120_000,
      cli,
    );
    const cutAt = Date.now();
    // The hypervisor's session processes die, and with them the tunnel to the guest.
    await killSessions(hypervisor);
    const first = await cli.end(60_000);
    // The guest's connection went with the hypervisor's: the run says the guest step failed.
    expect(first.code, shown(first)).not.toBe(0);
    expect(first.stdout, shown(first)).toMatch(/cutfill: guest FAILED: .*lost/);

    // No sshd signals a command without a terminal: the fill hears its input end (or fall silent)
    // and stops itself, removing its file. Meanwhile the free space never goes below the reserve.
    const samples = await untilQuiet(90_000);
    const last = samples.at(-1) as GuestState;
    console.info(
      `guest fill cut: the run ended ${first.code}; fill processes after the cut: ${samples[0]?.fills}; the fill file went ${Date.now() - cutAt} ms after the cut; least free ${Math.min(...samples.map((s) => s.availKiB))} KiB of ${last.sizeKiB}`,
    );
    expect(last.fillFile, "the fill file is gone").toBe(false);
    expect(last.fills, "no fill runs").toBe(0);
    for (const s of samples) expect(s.availKiB).toBeGreaterThan(0.09 * s.sizeKiB);

    const next = await run(f, 120_000);
    expect(next.code, shown(next)).toBe(0);
    expect(next.stdout, shown(next)).toMatch(/cutfill: guest done: \/data: wrote [\d.]+ MiB of zeros/);
    const after = (await untilQuiet(5_000)).at(-1) as GuestState;
    expect([after.fillFile, after.fills]).toEqual([false, 0]);
    expect(after.availKiB).toBeGreaterThan(0.09 * after.sizeKiB);
    const sum = await guest.ssh(`sync; echo 3 > /proc/sys/vm/drop_caches; sha256sum ${data.survivorPath}`);
    expect(sum.stdout.split(" ")[0]).toBe(data.survivorSha256);

    await guest.shutdown();
    expect(() => execFileSync("qemu-img", ["check", "-q", "-f", "qcow2", data.path])).not.toThrow();
  });
});
