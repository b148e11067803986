/**
 * Where a kill trial's image lives and how the CLI reaches it: this machine (local transport) or a
 * real OpenSSH sshd on loopback logging in the lab's test user. Each trial gets its own directory
 * holding only the image (and whatever reclaim leaves beside it), so leftovers are easy to see.
 */
import { chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { copySparse } from "../helpers/images.js";
import {
  ensureTestUser,
  giveToTestUser,
  type KeyPair,
  type Lab,
  type SshdHost,
  TEST_USER,
} from "../lab/sshd.js";

export interface Hypervisor {
  /** "local" or "ssh": part of the class names in the tally. */
  kind: "local" | "ssh";
  /** The inventory host's name: the plain renderer starts each disk's lines with it. */
  host: string;
  /** A fresh directory with a sparse copy of `template` in it as `vm.qcow2`. */
  newDisk(template: string): { dir: string; image: string };
  /** Makes a file the trial put beside the image reclaim's (the SSH user's) own. */
  own(path: string): void;
  /** Inventory and playbook for `image` under `policy` (YAML flow mapping body). */
  files(image: string, policy: string): string[];
  env: NodeJS.ProcessEnv;
}

let seq = 0;

function playbookText(hosts: string, image: string, policy: string): string {
  return `- name: kill trial\n  hosts: ${hosts}\n  policy: { ${policy} }\n  guests:\n    - name: vm\n      disks: [${JSON.stringify(image)}]\n`;
}

/** This machine, no SSH. */
export function localHypervisor(lab: Lab, work: string): Hypervisor {
  const inventory = join(work, "local-inventory.yml");
  writeFileSync(inventory, "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n");
  return {
    kind: "local",
    host: "localhost",
    newDisk(template) {
      const dir = lab.tempDir("reclaim-fault-local-");
      const image = join(dir, "vm.qcow2");
      copySparse(template, image);
      return { dir, image };
    },
    own: () => {},
    files(image, policy) {
      const playbook = join(work, `local-${++seq}.yml`);
      writeFileSync(playbook, playbookText("localhost", image, policy));
      return ["-i", inventory, playbook];
    },
    env: {},
  };
}

/** A real sshd on loopback; reclaim logs in as the lab's test user with a generated key. */
export function sshHypervisor(lab: Lab, work: string, sshd: SshdHost, key: KeyPair): Hypervisor {
  const user = ensureTestUser();
  const inventory = join(work, "ssh-inventory.yml");
  writeFileSync(
    inventory,
    `all:\n  hosts:\n    kvm:\n      ansible_host: ${sshd.address}\n      ansible_port: ${sshd.port}\n      ansible_user: ${TEST_USER}\n      ansible_ssh_private_key_file: ${key.privateKey}\n`,
  );
  const knownHosts = join(work, "ssh-known_hosts");
  writeFileSync(knownHosts, sshd.knownHostsLines());
  const sshConfig = join(work, "ssh_config.empty");
  writeFileSync(sshConfig, "");
  // An empty HOME: no ~/.ssh of whoever runs the tests is read.
  const home = lab.tempDir("reclaim-fault-home-");
  return {
    kind: "ssh",
    host: "kvm",
    newDisk(template) {
      const dir = lab.tempDir("reclaim-fault-ssh-");
      giveToTestUser(dir);
      const image = join(dir, "vm.qcow2");
      copySparse(template, image);
      giveToTestUser(image);
      return { dir, image };
    },
    own: (path) => chownSync(path, user.uid, user.gid),
    files(image, policy) {
      const playbook = join(work, `ssh-${++seq}.yml`);
      writeFileSync(playbook, playbookText("kvm", image, policy));
      return ["-i", inventory, playbook, "--ssh-config", sshConfig, "--known-hosts", knownHosts];
    },
    env: { HOME: home, SSH_AUTH_SOCK: "" },
  };
}
