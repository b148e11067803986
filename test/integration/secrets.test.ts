/**
 * Secrets (the key passphrase, the sudo password, from the environment) appear in no output, audit
 * log, report, step summary or saved plan: on the local host, and over real SSH (the lab) where
 * both are used: an encrypted key, and sudo for an image only root can read.
 */
import { chmodSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deferCleanups } from "../helpers/cleanup.js";
import { type CliRun, ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { bloatedImage, writePlaybook } from "../helpers/images.js";
import { type KeyPair, Lab, type SshdHost, sudoAvailable, TEST_USER, writeKnownHosts } from "../lab/sshd.js";

const { workspace } = deferCleanups();
const lab = new Lab();
afterAll(() => lab.close(), 30_000);

const PASSPHRASE = "passphrase-marker-7d41c09e";
const BECOME = "become-marker-2b8f6a13";
const WRONG = "wrong-passphrase-marker-5e0a";
const MARKERS = [PASSPHRASE, BECOME, WRONG];

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

/** Every file under the directories but the images, as text. */
function artifacts(dirs: readonly string[]): Map<string, string> {
  const files = new Map<string, string>();
  for (const dir of dirs) {
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || entry.name.endsWith(".qcow2")) continue;
      const path = join(entry.parentPath, entry.name);
      files.set(path, readFileSync(path, "latin1"));
    }
  }
  return files;
}

/** The options of a plan and an apply that write every artifact there is, into dir. */
function everyArtifact(dir: string) {
  const at = (name: string) => join(dir, name);
  return {
    at,
    plan: ["--out", at("plan.json"), "--report-json", at("plan-report.json"), "--markdown", at("plan.md")],
    apply: [
      "--verbose",
      "--log",
      at("apply.jsonl"),
      "--report-json",
      at("apply-report.json"),
      "--junit",
      at("junit.xml"),
      "--markdown",
      at("apply.md"),
    ],
    written: [
      "plan.json",
      "plan-report.json",
      "plan.md",
      "apply.jsonl",
      "apply-report.json",
      "junit.xml",
      "apply.md",
      "step-summary.md",
      "state/reclaim/runs.jsonl",
    ],
  };
}

function environment(dir: string): NodeJS.ProcessEnv {
  const summary = join(dir, "step-summary.md");
  writeFileSync(summary, "");
  return {
    RECLAIM_SSH_PASSPHRASE: PASSPHRASE,
    RECLAIM_BECOME_PASSWORD: BECOME,
    XDG_STATE_HOME: join(dir, "state"),
    GITHUB_STEP_SUMMARY: summary,
  };
}

function expectNoSecret(runs: readonly CliRun[], files: Map<string, string>, written: readonly string[]) {
  for (const name of written)
    expect(
      [...files.keys()].some((path) => path.endsWith(`/${name}`)),
      `${name} was written`,
    ).toBe(true);
  const outputs = runs.flatMap((r, i) => [
    [`run ${i} stdout`, r.stdout],
    [`run ${i} stderr`, r.stderr],
  ]);
  for (const [where, text] of [...files.entries(), ...outputs])
    for (const marker of MARKERS) expect(text, where).not.toContain(marker);
}

describe("secrets, on the local host", { timeout: 60_000 }, () => {
  beforeAll(() => ensureBuilt(), 120_000);

  it("appear in no output, log, report or saved plan", async () => {
    const { dir, inventory } = workspace("reclaim-secrets-test-");
    const image = join(dir, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
    const playbook = writePlaybook(dir, [image]);
    const env = environment(dir);
    const a = everyArtifact(dir);
    const runs = [
      await runCliProcess(["plan", "-i", inventory, playbook, ...a.plan], env),
      await runCliProcess(["plan", "--json", "-i", inventory, playbook], env),
      await runCliProcess(["apply", "--yes", "-i", inventory, playbook, ...a.apply], env),
      await runCliProcess(["apply", "--yes", "--json", "-i", inventory, playbook], env),
      // Runs that fail say why, and nothing more: the saved plan is stale now; a missing inventory.
      await runCliProcess(["apply", a.at("plan.json"), "--log", a.at("apply.jsonl")], env),
      await runCliProcess(["plan", "-i", a.at("missing.yml"), playbook], env),
    ];
    expect(
      runs.map((r) => r.code),
      runs.map(shown).join("\n"),
    ).toEqual([0, 0, 0, 0, 1, 4]);
    expectNoSecret(runs, artifacts([dir]), a.written);
  });
});

describe("secrets, over SSH where they are used", { timeout: 60_000 }, () => {
  let key: KeyPair;
  let host: SshdHost;
  let work: string;
  let home: string;

  beforeAll(async () => {
    lab.user();
    work = lab.tempDir("reclaim-secrets-ssh-");
    home = lab.tempDir("reclaim-secrets-home-");
    key = lab.key("id_secrets", PASSPHRASE);
    host = await lab.sshd({ address: "127.0.0.12", authorizedKeys: [key.publicKey] });
    ensureBuilt();
  }, 120_000);

  it("the key's passphrase and the sudo password appear in no output, log, report or saved plan", async () => {
    if (!sudoAvailable || !lab.user().sudo) expect.fail("sudo is not installed: become cannot be tested");
    // Root's image, unreadable for the test user: only become reaches it.
    const images = lab.tempDir("reclaim-secrets-images-");
    chmodSync(images, 0o755);
    const image = join(images, "vm.qcow2");
    bloatedImage(image, { virtualMiB: 128, writtenMiB: 40, freedMiB: 32 });
    chmodSync(image, 0o600);
    const inventory = join(work, "inventory.yml");
    writeFileSync(
      inventory,
      [
        "all:",
        "  hosts:",
        "    kvm:",
        `      ansible_host: ${host.address}`,
        `      ansible_port: ${host.port}`,
        `      ansible_user: ${TEST_USER}`,
        `      ansible_ssh_private_key_file: ${key.privateKey}`,
        "",
      ].join("\n"),
    );
    const playbook = join(work, "playbook.yml");
    writeFileSync(
      playbook,
      [
        "- name: secrets play",
        "  hosts: kvm",
        "  become: true",
        "  policy:",
        "    min_reclaimable: 16MiB",
        "    min_ratio: 10%",
        "    zero: none",
        "  guests:",
        "    - name: vm",
        `      disks: [${JSON.stringify(image)}]`,
        "",
      ].join("\n"),
    );
    const sshConfig = join(work, "ssh_config");
    writeFileSync(sshConfig, "");
    const ssh = [
      "--known-hosts",
      writeKnownHosts(join(work, "known_hosts"), [host]),
      "--ssh-config",
      sshConfig,
    ];
    const env = { ...environment(work), HOME: home, SSH_AUTH_SOCK: "" };
    const a = everyArtifact(work);
    const runs = [
      await runCliProcess(["plan", "-i", inventory, playbook, ...ssh, ...a.plan], env),
      await runCliProcess(["apply", "--yes", "-i", inventory, playbook, ...ssh, ...a.apply], env),
      // A wrong passphrase: the host is unreachable, and the message names the key, not the passphrase.
      await runCliProcess(["plan", "-i", inventory, playbook, ...ssh], {
        ...env,
        RECLAIM_SSH_PASSPHRASE: WRONG,
      }),
    ];
    expect(
      runs.map((r) => r.code),
      runs.map(shown).join("\n"),
    ).toEqual([0, 0, 3]);
    // Both secrets were used: the key was decrypted and sudo read the image.
    expect(runs[1]?.stdout).toMatch(/^kvm +: ok=0 changed=1 /m);
    expectNoSecret(runs, artifacts([work, images, home]), a.written);
  });
});
