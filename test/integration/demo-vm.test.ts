/**
 * `reclaim demo --vm` as a user runs it: the built CLI makes a data disk, boots a real guest under
 * QEMU, fills it with zeros from inside, powers it off, rewrites its image, starts it again with
 * the play's start_command, proves the data survived, applies again to no effect, then powers the
 * guest off and removes everything: no QEMU and no temp dir is left.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSize } from "../../src/config/units.js";
import { type CliRun, ensureBuilt, runCliProcess } from "../helpers/cli.js";
import { ensureGuestArtifacts } from "../lab/guest/build.js";
import { processesMentioning, procInfo, terminate } from "../lab/proc.js";

const MiB = 1024 * 1024;
/** The demo's TMPDIR: whatever it starts names this directory on its command line. */
let tmp: string;

/** Processes whose command line names our TMPDIR: only what the demo started (its QEMU). */
function started(): number[] {
  return processesMentioning(tmp).filter((pid) => pid !== process.pid);
}

beforeAll(async () => {
  ensureBuilt();
  // Built here, when missing, with the lab's bound and reaper, rather than inside the CLI run.
  await ensureGuestArtifacts();
  tmp = mkdtempSync(join(tmpdir(), "reclaim-demo-vm-test-"));
}, 600_000);

afterAll(async () => {
  if (!tmp) return;
  // Only if the demo failed to clean up: end its QEMU by PID, then remove its files.
  const left = started().flatMap((pid) => procInfo(pid) ?? []);
  await terminate(left);
  rmSync(tmp, { recursive: true, force: true });
}, 30_000);

/** The demo's step `n`: from its "== n." heading to the next one. */
function section(out: string, n: number): string {
  return out.split(`\n== ${n}. `)[1]?.split(`\n== ${n + 1}. `)[0] ?? "";
}

function shown(run: CliRun): string {
  return `exit ${run.code} ${run.signal ?? ""}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

describe("reclaim demo --vm", { timeout: 240_000 }, () => {
  it("fills inside a real guest, powers it off, rewrites, starts it again; a second run changes nothing", async () => {
    const run = await runCliProcess(["demo", "--vm"], { TMPDIR: tmp });
    const out = run.stdout;
    expect(run.code, shown(run)).toBe(0);

    // The plan: a fill inside, and a shutdown only if the fill makes the rewrite worth it.
    expect(section(out, 3)).toMatch(/inside the guest, first:\n\s+fill \/data with \d+ MiB of zeros/);
    expect(section(out, 3)).toMatch(
      /vm \(guest\): running; shut down only if, after the fill, a rewrite is worth it/,
    );

    // Apply: fill → poweroff inside → rewrite → start_command.
    const apply = section(out, 4);
    expect(apply).toMatch(/\/data: wrote \d+ MiB of zeros/);
    expect(apply).toMatch(/demo-vm \(shutdown, guest\): shut down in [\d.]+ s/);
    const rewrite = /changed .*demo-vm\.qcow2: rewritten and verified\s+([\d.]+ \w+) → ([\d.]+ \w+)/.exec(
      apply,
    );
    expect(rewrite, shown(run)).not.toBeNull();
    const before = parseSize(rewrite?.[1] ?? "") ?? 0;
    const after = parseSize(rewrite?.[2] ?? "") ?? Number.POSITIVE_INFINITY;
    expect(before - after).toBeGreaterThan(400 * MiB);
    expect(apply).toMatch(/demo-vm \(start, guest\): started again \(qemu-system-x86_64 /);

    // The guest is back, with its data.
    const back = section(out, 5);
    expect(back).toMatch(/QEMU pid \d+, started by the play's start_command/);
    expect(back).toMatch(/sha256 of \/data\/keep\.bin inside the guest: [0-9a-f]{16}…, unchanged\./);

    // The second run: no fill, no shutdown, nothing changed.
    const again = section(out, 6);
    expect(again).toMatch(/a fill could give back at most/);
    expect(again).not.toMatch(/wrote \d+ MiB of zeros/);
    expect(again).not.toMatch(/\(shutdown, guest\)/);
    expect(again).toMatch(/^localhost\s+: ok=1 changed=0 /m);
    expect(again).toMatch(/The guest kept running \(same QEMU pid\)/);
    expect(section(out, 7)).toMatch(/powered off from inside in [\d.]+ s/);
    expect(out).toMatch(/^Demo done in [\d.]+ s: reclaimed /m);

    // Nothing left behind: no QEMU it started, no temp dir.
    const workDir = /^Working in (\S+)$/m.exec(out)?.[1] ?? "";
    expect(workDir.startsWith(join(tmp, "reclaim-demo-vm-"))).toBe(true);
    expect(existsSync(workDir)).toBe(false);
    expect(started()).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });
});
