/**
 * One kill trial during a zero-fill inside a running guest: `reclaim apply` is killed while the
 * fill file grows, then the guest's files and image are checked, and the next run that is not
 * killed must do the whole job (fill, shut down, rewrite, start again) and leave no fill file in
 * the guest and nothing beside the image; a further run must find nothing to change.
 *
 * A running guest changes its own image (the fill overwrites free blocks), so "the same content"
 * here is what the guest sees: every file of /data keeps its sha256. The image is checked with
 * `qemu-img check -U` while the guest holds it (leaked clusters there are the running guest's own
 * allocations in flight, not damage), and strictly, without -U, by the start command while it is off.
 */
import { readdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { sleep } from "../lab/proc.js";
import { changedFiles, FILL_FILE, type FillGuest } from "./fill-guest.js";
import {
  type ClassTally,
  identityOf,
  type Missed,
  missed,
  observe,
  qemuImgExit,
  runAndKill,
  runBounded,
  shown,
} from "./trials.js";

const MiB = 1024 * 1024;

export interface GuestTrial {
  guest: FillGuest;
  /** Where in the fill to kill, as a share of its planned size (0..1). */
  share: number;
  /** What the image may allocate once the job is done (the guest's files and little else). */
  rewrittenBelow: number;
  label: string;
  tally: ClassTally;
}

const KILL_RUN_MS = 120_000;
const NEXT_RUN_MS = 240_000;

/** Resolves with why not when the CLI ended before the kill. */
export async function guestKillTrial(t: GuestTrial): Promise<true | Missed> {
  const g = t.guest;
  await g.ensureUp();
  // Make the fill worth it again: zeros written and deleted are data in the image until a rewrite.
  const bloat = await g.sh(
    "dd if=/dev/zero of=/data/bloat bs=1M count=192 conv=fsync 2>&1; rm -f /data/bloat; sync",
  );
  if (bloat.exitCode !== 0) throw new Error(`cannot bloat the guest: ${bloat.stdout}${bloat.stderr}`);
  const inode = statSync(g.image).ino;
  const checksBefore = g.checks().length;
  const qemuBefore = g.qemu()?.pid;

  let plannedMiB = 0;
  let target = 0;
  let sizeAtKill = -1;
  const killed = await runAndKill(
    ["apply", "--yes", "--verbose", ...g.args],
    {},
    {
      at: (line) => {
        const planned = /fill \/data with ([\d.]+) MiB of zeros/.exec(line);
        if (planned) plannedMiB = Number(planned[1]);
        return /: freeing blocks inside the guest \(fill \/data\)/.test(line);
      },
      wait: async () => {
        target = Math.max(1, Math.floor(plannedMiB * t.share)) * MiB;
        const deadline = Date.now() + 60_000;
        for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
          const r = await g.sh(`stat -c %s ${FILL_FILE} 2>/dev/null || echo -1`, 5000).catch(() => undefined);
          sizeAtKill = Number(r?.stdout.trim() ?? -1);
          if (sizeAtKill >= target) return;
          await sleep(20);
        }
      },
    },
    KILL_RUN_MS,
  );
  if (!killed.killed) return missed(killed);

  const tally = t.tally;
  const problems: string[] = [];
  tally.trials += 1;
  tally["killed-in"][killed.lastStep] = (tally["killed-in"][killed.lastStep] ?? 0) + 1;
  // busybox shows the dd applet as `{dd} sh -c f=$1; …` (it runs in a fork of the fill's shell).
  const after = await g.sh("ps | grep '[{]dd[}]' | grep -c reclaim-zero-fill; ls -a /data", 10_000);
  const [running, ...names] = after.stdout.trim().split("\n");
  if (Number(running) > 0) tally["still-running-after-kill"] += 1;
  const stateAfterKill = `fill file ${names.includes(".reclaim-zero-fill") ? "present" : "absent"}, a fill ${Number(running) > 0 ? "still running" : "not running"} (planned ${plannedMiB} MiB, killed at ${(sizeAtKill / MiB).toFixed(0)} MiB for a target of ${(target / MiB).toFixed(0)} MiB)`;

  const changed = await changedFiles(g);
  // The guest runs (and may still be filling): -U reads its image while QEMU writes it, so
  // clusters it is allocating show as leaked (exit 3), which is no damage. Corruption is exit 2.
  const live = await qemuImgExit(["check", "-U", "-f", "qcow2", g.image]);
  if (live.code === 3)
    observe(tally, "live image check (-U): leaked clusters only, of the running guest's writes");
  const sameInode = statSync(g.image).ino === inode;
  if (changed.length > 0 || (live.code !== 0 && live.code !== 3)) {
    tally.outcomes.lost += 1;
    problems.push(
      `after the kill: files changed in the guest: [${changed.join(", ")}]; check -U exit ${live.code}: ${live.out}`,
    );
  } else tally.outcomes[sameInode ? "intact" : "replaced"] += 1;

  const next = await runBounded(["apply", "--yes", ...g.args], {}, NEXT_RUN_MS);
  const nextProblems: string[] = [];
  if (next.code !== 0) nextProblems.push(`next run: ${shown(next)}`);
  if (!/^changed .*guest\.qcow2: rewritten and verified/m.test(next.stdout))
    nextProblems.push(`next run did not rewrite the image: ${shown(next)}`);
  // Started again by the play's start_command: a new QEMU, a new host key.
  let up = true;
  try {
    await g.waitUp();
  } catch (e) {
    up = false;
    nextProblems.push(`the guest did not come back: ${(e as Error).message}`);
  }
  if (up && g.qemu()?.pid === qemuBefore) nextProblems.push("the guest was not restarted (same QEMU)");
  const left = readdirSync(dirname(g.image)).filter((n) => n.includes(".reclaim-"));
  if (left.length > 0) nextProblems.push(`beside the image after the next run: ${left.join(", ")}`);
  const checks = g.checks().slice(checksBefore);
  if (checks.length === 0 || checks.some((c) => c !== 0))
    nextProblems.push(`qemu-img check of the image while the guest was off: ${JSON.stringify(checks)}`);
  const allocated = statSync(g.image).blocks * 512;
  if (allocated >= t.rewrittenBelow)
    nextProblems.push(`not rewritten: allocates ${allocated} bytes (expected < ${t.rewrittenBelow})`);
  let fillLeft = false;
  if (up) {
    const ls = await g.sh("ls -a /data", 10_000);
    fillLeft = ls.stdout.includes(".reclaim-zero-fill");
    if (fillLeft) nextProblems.push(`fill file left in the guest: ${ls.stdout.trim().split("\n").join(" ")}`);
    const changedNow = await changedFiles(g);
    if (changedNow.length > 0) nextProblems.push(`files changed in the guest: ${changedNow.join(", ")}`);
  }
  if (left.length > 0 || fillLeft) tally["leftovers-after-next-run"] += 1;

  if (up) {
    const identity = identityOf(g.image);
    const qemu = g.qemu()?.pid;
    const further = await runBounded(["apply", "--yes", ...g.args], {}, NEXT_RUN_MS);
    if (further.code !== 0 || !/No changes: nothing to apply/.test(further.stdout))
      nextProblems.push(`further run did not report nothing to change: ${shown(further)}`);
    if (identityOf(g.image) !== identity || g.qemu()?.pid !== qemu)
      nextProblems.push("further run touched the image or the guest");
  }

  if (nextProblems.length === 0) tally["next-run-completed"] += 1;
  problems.push(...nextProblems);
  if (problems.length > 0)
    tally.failures.push(
      `${t.label}: killed in ${killed.lastStep}; after the kill: ${stateAfterKill}; ${problems.join(" | ")}`,
    );
  return true;
}
