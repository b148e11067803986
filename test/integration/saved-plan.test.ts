/**
 * Saved plans, as Terraform has them: `plan --out FILE` keeps the plan with what it was made from;
 * `apply FILE` carries out exactly that plan on real images, and refuses a stale one, naming
 * what changed, without touching anything.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, readFileSync, statSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { deferCleanups } from "../helpers/cleanup.js";
import { type CliRun, ensureBuilt, runCliProcess } from "../helpers/cli.js";
import {
  allocated,
  bloatedImage,
  copySparse,
  identical,
  writeLocalInventory,
  writePlaybook,
} from "../helpers/images.js";
import { outputValidator } from "../helpers/schemas.js";

const { workspace } = deferCleanups();
ensureBuilt();

function shown(run: CliRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

function setup() {
  const dir = workspace("reclaim-saved-plan-").dir;
  const image = join(dir, "vm.qcow2");
  bloatedImage(image, { virtualMiB: 256, writtenMiB: 96, freedMiB: 80 });
  const inventory = writeLocalInventory(dir);
  const playbook = writePlaybook(dir, [image]);
  const saved = join(dir, "plan.json");
  return { dir, image, inventory, playbook, saved };
}

describe("a saved plan", { timeout: 60_000 }, () => {
  it("is carried out as it was saved, without a confirmation, and holds a valid plan", async () => {
    const { image, inventory, playbook, saved } = setup();
    const pristine = `${image}.pristine`;
    copySparse(image, pristine);
    const before = allocated(image);
    const plan = await runCliProcess(["plan", "-i", inventory, playbook, "--out", saved]);
    expect(plan.code, shown(plan)).toBe(0);
    expect(plan.stdout).toContain(`Saved the plan to ${saved}`);
    const file = JSON.parse(readFileSync(saved, "utf8"));
    expect(file).toMatchObject({ format: "reclaim-saved-plan", version: 1, playbooks: [{ path: playbook }] });
    expect(outputValidator("plan")(file.plan)).toBe(true);

    const applied = await runCliProcess(["apply", saved]);
    expect(applied.code, shown(applied)).toBe(0);
    expect(applied.stdout).toMatch(/^changed .*vm\.qcow2: rewritten and verified/m);
    expect(allocated(image)).toBeLessThan(before - 48 * 1024 * 1024);
    expect(identical(pristine, image)).toBe(true);
  });

  it("is refused once its image has changed, naming it, and nothing is touched", async () => {
    const { image, inventory, playbook, saved } = setup();
    expect((await runCliProcess(["plan", "-i", inventory, playbook, "--out", saved])).code).toBe(0);
    const later = new Date(Date.now() + 60_000);
    utimesSync(image, later, later);
    const inode = statSync(image).ino;
    const applied = await runCliProcess(["apply", saved]);
    expect(applied.code, shown(applied)).toBe(1);
    expect(applied.stderr).toContain("the saved plan is stale; nothing was changed");
    expect(applied.stderr).toContain(`${image} changed since the plan was made: modified since`);
    expect(statSync(image).ino).toBe(inode);
  });

  it("is refused once its playbook has changed", async () => {
    const { inventory, playbook, saved } = setup();
    expect((await runCliProcess(["plan", "-i", inventory, playbook, "--out", saved])).code).toBe(0);
    appendFileSync(playbook, "# edited\n");
    const applied = await runCliProcess(["apply", saved]);
    expect(applied.code, shown(applied)).toBe(1);
    expect(applied.stderr).toContain(`the playbook ${playbook} changed since the plan was made`);
  });

  it("is refused once a new image appears where the planned one was", async () => {
    const { image, inventory, playbook, saved } = setup();
    expect((await runCliProcess(["plan", "-i", inventory, playbook, "--out", saved])).code).toBe(0);
    execFileSync("cp", ["--sparse=always", image, `${image}.new`]);
    execFileSync("mv", [`${image}.new`, image]);
    const applied = await runCliProcess(["apply", saved]);
    expect(applied.code, shown(applied)).toBe(1);
    expect(applied.stderr).toMatch(/changed since the plan was made: it is another file/);
  });

  it("names its own inventory: -i beside it is a usage error", async () => {
    const { inventory, playbook, saved } = setup();
    expect((await runCliProcess(["plan", "-i", inventory, playbook, "--out", saved])).code).toBe(0);
    const applied = await runCliProcess(["apply", "-i", inventory, saved]);
    expect(applied.code).toBe(5);
    expect(applied.stderr).toContain("a saved plan names its own inventory");
  });
});
