/**
 * bench/fleet-noop: the same no-op fleet run — gather the facts of every disk and find nothing to
 * do — by reclaim and by an equivalent ansible-playbook, side by side in one run.
 *
 *   npx tsx bench/fleet-noop.ts [--hosts 20] [--disks 5] [--runs 3]
 *
 * Hosts are real sshd processes on 127.0.0.2…, logged into as the `reclaim-test` user (root's
 * shell start-up here costs ~0.6 s a command and would swamp both tools). reclaim: `reclaim plan`
 * over SSH. Ansible: gather_facts off, pipelining on, forks = hosts, per disk `stat` and
 * `command: qemu-img info --output=json`, the facts reclaim's plan reads. Prints a table and the
 * ratio; writes bench/results/fleet-noop.json.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { giveToTestUser, Lab, TEST_USER, writeKnownHosts } from "../test/lab/sshd.js";

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "20" },
    disks: { type: "string", default: "5" },
    runs: { type: "string", default: "3" },
  },
});
const HOSTS = Number(values.hosts);
const DISKS = Number(values.disks);
const RUNS = Number(values.runs);
const ROOT = new URL("..", import.meta.url).pathname;

const lab = new Lab();
try {
  lab.user();
  const dir = lab.tempDir("reclaim-bench-fleet-");
  giveToTestUser(dir);
  const key = lab.key("id_bench");
  const hosts = await lab.fleet(HOSTS, { authorizedKeys: [key.publicKey], maxSessions: 10 });
  const knownHosts = writeKnownHosts(join(dir, "known_hosts"), hosts);

  // Small, healthy images: nothing to reclaim, so both tools only read.
  const disks: string[][] = hosts.map((_, h) => {
    const hostDir = join(dir, `kvm${h}`);
    mkdirSync(hostDir);
    giveToTestUser(hostDir);
    return Array.from({ length: DISKS }, (_, d) => {
      const path = join(hostDir, `vm${d}.qcow2`);
      execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", path, "64M"]);
      giveToTestUser(path);
      return path;
    });
  });

  const inventory = join(dir, "inventory.yml");
  writeFileSync(
    inventory,
    `all:\n  vars:\n    ansible_user: ${TEST_USER}\n    ansible_ssh_private_key_file: ${key.privateKey}\n    ansible_python_interpreter: /usr/bin/python3\n  children:\n    fleet:\n      hosts:\n${hosts
      .map(
        (h, i) =>
          `        kvm${i}:\n          ansible_host: ${h.address}\n          ansible_port: ${h.port}\n`,
      )
      .join("")}`,
  );
  const playbook = join(dir, "reclaim.yml");
  writeFileSync(
    playbook,
    `- name: fleet no-op\n  hosts: fleet\n  policy: { min_reclaimable: 1TiB, zero: none }\n  guests:\n${disks
      .map((list, i) => `    - name: vm${i}\n      host: kvm${i}\n      disks: [${list.join(", ")}]\n`)
      .join("")}`,
  );
  const ansiblePlaybook = join(dir, "ansible.yml");
  writeFileSync(
    ansiblePlaybook,
    `- hosts: fleet\n  gather_facts: false\n  vars:\n    disks: "{{ lookup('ansible.builtin.fileglob', '${dir}/' ~ inventory_hostname ~ '/*.qcow2', wantlist=True) }}"\n  tasks:\n    - name: stat each disk\n      ansible.builtin.stat: { path: "{{ item }}", get_checksum: false }\n      loop: "{{ disks }}"\n    - name: qemu-img info of each disk\n      ansible.builtin.command: qemu-img info --output=json {{ item }}\n      loop: "{{ disks }}"\n      changed_when: false\n`,
  );
  const sshConfig = join(dir, "ssh_config");
  writeFileSync(sshConfig, "");

  const reclaim = () =>
    timed(
      "node",
      [
        // e.g. BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile reclaim's side.
        ...(process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? []),
        join(ROOT, "dist/cli/main.js"),
        "plan",
        "-i",
        inventory,
        playbook,
        "--known-hosts",
        knownHosts,
        "--ssh-config",
        sshConfig,
        "-f",
        String(HOSTS),
      ],
      {},
    );
  let ansibleRun = 0;
  const ansible = () => {
    // Each run gets fresh ControlMaster sockets, as a CI job would: a mux master left over from the
    // previous run was seen to wedge a worker for good.
    const controlDir = join(dir, `cp${++ansibleRun}`);
    mkdirSync(controlDir);
    try {
      return timed("ansible-playbook", ["-i", inventory, "-f", String(HOSTS), ansiblePlaybook], {
        ANSIBLE_PIPELINING: "True",
        ANSIBLE_HOST_KEY_CHECKING: "True",
        ANSIBLE_SSH_ARGS: `-o UserKnownHostsFile=${knownHosts} -o ControlMaster=auto -o ControlPersist=60s`,
        ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir,
        ANSIBLE_NOCOLOR: "1",
        ANSIBLE_STDOUT_CALLBACK: "default",
      });
    } finally {
      // End this run's mux masters (they outlive ansible-playbook by design).
      spawnSync("pkill", ["-f", `${controlDir}/`]);
    }
  };

  const hasAnsible = spawnSync("ansible-playbook", ["--version"]).status === 0;
  const rows: { tool: string; runs: number[] }[] = [{ tool: "reclaim plan", runs: [] }];
  if (hasAnsible) rows.push({ tool: "ansible-playbook (pipelining)", runs: [] });
  console.error(`${HOSTS} sshd hosts up, ${HOSTS * DISKS} images made; measuring`);
  for (let i = 0; i < RUNS; i++) {
    rows[0]?.runs.push(reclaim());
    console.error(`run ${i + 1}: reclaim ${rows[0]?.runs.at(-1)?.toFixed(2)} s`);
    if (hasAnsible) {
      rows[1]?.runs.push(ansible());
      console.error(`run ${i + 1}: ansible-playbook ${rows[1]?.runs.at(-1)?.toFixed(2)} s`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const base = median(rows[0]?.runs ?? []);
  console.log(`fleet no-op: ${HOSTS} hosts × ${DISKS} disks, ${RUNS} runs each (median wall time)`);
  for (const row of rows) {
    const m = median(row.runs);
    console.log(
      `${row.tool.padEnd(32)} ${m.toFixed(2).padStart(7)} s   ${(m / base).toFixed(1)}×   runs: ${row.runs.map((r) => r.toFixed(2)).join(", ")}`,
    );
  }
  if (!hasAnsible)
    console.log("ansible-playbook not installed (apt-get install ansible-core): no comparison");
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(
    join(ROOT, "bench/results/fleet-noop.json"),
    `${JSON.stringify({ hosts: HOSTS, disks: DISKS, runs: RUNS, date: new Date().toISOString(), rows: rows.map((r) => ({ ...r, median: median(r.runs) })) }, null, 2)}\n`,
  );
} finally {
  await lab.close();
}

function timed(command: string, args: string[], env: Record<string, string>): number {
  const started = performance.now();
  const r = spawnSync(command, args, {
    env: { ...process.env, ...env },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const seconds = (performance.now() - started) / 1000;
  if (r.status !== 0)
    throw new Error(`${command} exited ${r.status}:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
  return seconds;
}
