/**
 * reclaim's guest side on real guests: the built CLI connects to a running QEMU guest over SSH and
 * frees the blocks its filesystem no longer uses, before (and instead of) touching the running
 * guest's image on the host. Trim where discard reaches the image; a bounded zero-fill otherwise.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { ensureGuestArtifacts } from "../lab/guest/build.js";
import { allocatedBytes, type DataImage, makeDataImage } from "../lab/guest/data-image.js";
import { bootGuest, type GuestVm } from "../lab/guest/vm.js";
import { Lab } from "../lab/sshd.js";

const MiB = 1024 * 1024;
const lab = new Lab();
afterAll(() => lab.close(), 60_000);

let dir: string;
let trimImage: DataImage;
let fillImage: DataImage;
let trimGuest: GuestVm;
let fillGuest: GuestVm;

beforeAll(async () => {
  ensureBuilt();
  const artifacts = await ensureGuestArtifacts();
  dir = lab.tempDir("reclaim-guest-zero-");
  const shape = { sizeMiB: 512, fillMiB: 320, deleteMiB: 256 };
  [trimImage, fillImage] = await Promise.all([
    makeDataImage(join(dir, "trim.qcow2"), shape),
    makeDataImage(join(dir, "fill.qcow2"), shape),
  ]);
  [trimGuest, fillGuest] = await Promise.all([
    bootGuest({ dataImage: trimImage.path, discard: "unmap", lab, artifacts, name: "trim" }),
    bootGuest({ dataImage: fillImage.path, discard: "ignore", lab, artifacts, name: "fill" }),
  ]);
}, 240_000);

/** A playbook for one running guest on this machine, reached directly on its forwarded port. */
function files(guest: GuestVm, image: string, zero: string, shutdown = "never") {
  const inventory = join(dir, `${guest.name}-inventory.yml`);
  writeFileSync(inventory, "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n");
  const playbook = join(dir, `${guest.name}-${zero}-${shutdown}.yml`);
  writeFileSync(
    playbook,
    `- name: guest side\n  hosts: localhost\n  policy: { min_reclaimable: 16MiB, zero: ${zero}, fill_reserve: 10%, shutdown: ${shutdown} }\n  vm: { manager: guest }\n  guests:\n    - name: ${guest.name}\n      disks: [${image}]\n      ssh: { host: 127.0.0.1, port: ${guest.sshPort}, user: root }\n`,
  );
  const sshConfig = join(dir, `${guest.name}-ssh_config`);
  writeFileSync(sshConfig, `Host *\n  IdentityFile ${guest.identityFile}\n  IdentitiesOnly yes\n`);
  return ["-i", inventory, playbook, "--ssh-config", sshConfig, "--known-hosts", guest.knownHostsFile];
}

async function survivorIntact(guest: GuestVm, image: DataImage): Promise<void> {
  const r = await guest.ssh(`sync; echo 3 > /proc/sys/vm/drop_caches; sha256sum ${image.survivorPath}`);
  expect(r.stdout.split(" ")[0]).toBe(image.survivorSha256);
}

describe("freeing blocks inside a running guest", { timeout: 120_000 }, () => {
  it("plans the guest-side step before the host's, and leaves the running guest's image to it", async () => {
    const run = await runCliProcess(["plan", ...files(trimGuest, trimImage.path, "trim")], { HOME: dir });
    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(/inside the guest, first:\n\s+trim \/data \(fstrim/);
    expect(run.stdout).toMatch(/skip: in use by a running process/);
  });

  it("trims while the guest runs, and the host's image gives the space back at once", async () => {
    const before = allocatedBytes(trimImage.path);
    const run = await runCliProcess(["apply", "--yes", ...files(trimGuest, trimImage.path, "trim")], {
      HOME: dir,
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/\/data: trimmed/);
    expect(allocatedBytes(trimImage.path)).toBeLessThan(before - 200 * MiB);
    await survivorIntact(trimGuest, trimImage);
  });

  it("zero-fills where discard does not reach the image, keeps the reserve, and leaves no fill file", async () => {
    const before = allocatedBytes(fillImage.path);
    const run = await runCliProcess(["apply", "--yes", ...files(fillGuest, fillImage.path, "fill")], {
      HOME: dir,
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/\/data: wrote [\d.]+ MiB of zeros/);
    // Zeros written as data: the image holds them until a rewrite drops them.
    expect(allocatedBytes(fillImage.path)).toBeGreaterThanOrEqual(before);
    const ls = await fillGuest.ssh("ls -a /data; df -P -k /data");
    expect(ls.stdout).not.toContain(".reclaim-zero-fill");
    const avail = Number(/\s(\d+)\s+\d+%\s+\/data/.exec(ls.stdout)?.[1]);
    expect(avail * 1024).toBeGreaterThan(0.09 * 480 * MiB);
    await survivorIntact(fillGuest, fillImage);
  });

  it("removes a fill file an interrupted run left behind", async () => {
    await fillGuest.ssh("dd if=/dev/zero of=/data/.reclaim-zero-fill bs=1M count=8 2>/dev/null");
    const run = await runCliProcess(["apply", "--yes", ...files(fillGuest, fillImage.path, "fill")], {
      HOME: dir,
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/remove a fill file an interrupted run left in \/data/);
    expect((await fillGuest.ssh("ls -a /data")).stdout).not.toContain(".reclaim-zero-fill");
  });

  it("stops the fill at the reserve when the guest's own program uses the space up meanwhile, and that program's writes all succeed", async () => {
    // A program inside the guest writes 120 MiB slowly (several seconds), from before the fill
    // to after it: the fill, planned to leave only the reserve, meets it early.
    await fillGuest.ssh(
      "rm -f /data/app /data/app.rc; (for i in $(seq 0 59); do dd if=/dev/zero of=/data/app bs=2M count=1 seek=$i conv=notrunc,fsync 2>/dev/null || exit 1; sleep 0.05; done; echo done > /data/app.rc) </dev/null >/dev/null 2>&1 &",
    );
    const run = await runCliProcess(["apply", "--yes", ...files(fillGuest, fillImage.path, "fill")], {
      HOME: dir,
    });
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/\/data: wrote [\d.]+ MiB of zeros, then stopped: the free space fell to/);
    let rc = "";
    for (let i = 0; i < 120 && rc !== "done"; i++) {
      rc = (await fillGuest.ssh("cat /data/app.rc 2>/dev/null")).stdout.trim();
      if (rc !== "done") await new Promise((r) => setTimeout(r, 500));
    }
    expect(rc).toBe("done");
    const after = await fillGuest.ssh("ls -a /data; wc -c < /data/app; rm -f /data/app /data/app.rc");
    expect(after.stdout).not.toContain(".reclaim-zero-fill");
    expect(after.stdout).toMatch(/^125829120$/m);
  });

  it("with zero: auto and shutdown: never, writes no zeros a rewrite could not drop", async () => {
    const before = allocatedBytes(fillImage.path);
    const run = await runCliProcess(["apply", "--yes", ...files(fillGuest, fillImage.path, "auto")], {
      HOME: dir,
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /\/data: trim freed .* but the host's image gave back only .*no fill: its running guest is not shut down/,
    );
    expect(allocatedBytes(fillImage.path)).toBeLessThanOrEqual(before + 4 * MiB);
  });

  it("with zero: auto, fills instead when the trim never reached the image, then shuts down and rewrites", async () => {
    await fillGuest.ssh(
      "dd if=/dev/urandom of=/data/scratch bs=1M count=64 2>/dev/null; sync; rm /data/scratch; sync",
    );
    const run = await runCliProcess(
      ["apply", "--yes", ...files(fillGuest, fillImage.path, "auto", "graceful")],
      { HOME: dir },
    );
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/inside the guest, first:\n\s+trim \/data/);
    expect(run.stdout).toMatch(
      /\/data: trim freed .* but the host's image gave back only .*filled instead: wrote [\d.]+ MiB of zeros/,
    );
    expect(run.stdout).toMatch(/^stopped .*\(shutdown, guest\): shut down in/m);
    expect(run.stdout).toMatch(/^changed .*fill\.qcow2: rewritten and verified/m);
  });

  it("after the guest is shut down, its image passes qemu-img check and its filesystem e2fsck", async () => {
    await Promise.all([trimGuest.shutdown(), fillGuest.shutdown()]);
    for (const image of [trimImage, fillImage]) {
      execFileSync("qemu-img", ["check", "-f", "qcow2", image.path], { stdio: "ignore" });
    }
  });
});
