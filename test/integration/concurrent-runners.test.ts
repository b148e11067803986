/**
 * Two runners at once against one hypervisor over real SSH — two pipelines, two people: each disk
 * is converted exactly once. The per-disk lock on the hypervisor makes the second runner wait; it
 * then reads the disk's facts again and finds nothing left to do.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, ensureBuilt, startCli } from "../helpers/cli.js";
import { allocated, bloatedImage, copySparse, identical } from "../helpers/images.js";
import { giveToTestUser, type KeyPair, Lab, type SshdHost, TEST_USER, writeKnownHosts } from "../lab/sshd.js";

const lab = new Lab();
afterAll(() => lab.close(), 30_000);

let key: KeyPair;
let host: SshdHost;
let dir: string;
let home: string;

beforeAll(async () => {
  lab.user();
  ensureBuilt();
  key = lab.key("id_concurrent");
  dir = lab.tempDir("reclaim-concurrent-");
  giveToTestUser(dir);
  home = lab.tempDir("reclaim-concurrent-home-");
  host = await lab.sshd({ address: "127.0.0.11", authorizedKeys: [key.publicKey] });
}, 60_000);

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

describe("two runners against one hypervisor", { timeout: 120_000 }, () => {
  it("convert each disk exactly once, the second runner waiting on the first", async () => {
    const names = ["a", "b", "c"];
    const images = names.map((n) => join(dir, `${n}.qcow2`));
    for (const image of images) {
      bloatedImage(image, { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
      copySparse(image, `${image}.pristine`);
      giveToTestUser(image);
    }
    const before = images.map(allocated);
    const inventory = join(dir, "inventory.yml");
    writeFileSync(
      inventory,
      `all:\n  hosts:\n    kvm:\n      ansible_host: ${host.address}\n      ansible_port: ${host.port}\n      ansible_user: ${TEST_USER}\n      ansible_ssh_private_key_file: ${key.privateKey}\n`,
    );
    const playbook = join(dir, "playbook.yml");
    writeFileSync(
      playbook,
      [
        "- name: concurrent",
        "  hosts: kvm",
        "  policy: { min_reclaimable: 16MiB, zero: none, max_parallel_per_host: 3 }",
        "  guests:",
        ...names.map((n, i) => `    - { name: vm-${n}, disks: [${images[i]}] }`),
        "",
      ].join("\n"),
    );
    const knownHosts = writeKnownHosts(join(dir, "known_hosts"), [host]);
    const sshConfig = join(dir, "ssh_config");
    writeFileSync(sshConfig, "");
    const args = [
      "apply",
      "--yes",
      "-i",
      inventory,
      playbook,
      "--ssh-config",
      sshConfig,
      "--known-hosts",
      knownHosts,
    ];
    const env = { HOME: home, SSH_AUTH_SOCK: "" };

    const [first, second] = await Promise.all([startCli(args, env).done, startCli(args, env).done]);
    expect(first.code, shown(first)).toBe(0);
    expect(second.code, shown(second)).toBe(0);
    for (const [i, image] of images.entries()) {
      const line = new RegExp(`^changed .*${image.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:`, "m");
      const changed = [first, second].filter((run) => line.test(run.stdout));
      expect(changed.length, `${image}\n${shown(first)}\n${shown(second)}`).toBe(1);
      // The other runner waited for the lock, read the facts again and found the work done (it may
      // have planned while the first one's conversion ran: then it planned to reattach to it).
      const other = changed[0] === first ? second : first;
      const escaped = image.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      expect(other.stdout).toMatch(
        new RegExp(
          `^ok +kvm vm-\\w ${escaped}: (planned (rewrite|finish), but at apply time: )?would give back`,
          "m",
        ),
      );
      expect(allocated(image)).toBeLessThan((before[i] as number) - 48 * 1024 * 1024);
      expect(identical(`${image}.pristine`, image)).toBe(true);
    }
  });
});
