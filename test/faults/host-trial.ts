/**
 * One kill trial of a host-side rewrite: a fresh copy of the template image, `reclaim apply` killed
 * at a chosen point, the image checked against the template (a kill may leave it intact or already
 * replaced, never anything else), then a run that is not killed must finish the job, leave nothing
 * behind but a documented backup, and a further run must find nothing to change.
 */
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ProcInfo, processesMentioning } from "../lab/proc.js";
import type { Hypervisor } from "./hypervisors.js";
import {
  backupsOf,
  type ClassTally,
  convertRunning,
  endLeftovers,
  identityOf,
  imageOutcome,
  type KillPoint,
  leftoversBeside,
  type Missed,
  missed,
  observe,
  qemuImgExit,
  runAndKill,
  runBounded,
  settled,
  shown,
} from "./trials.js";

export interface HostTrial {
  hypervisor: Hypervisor;
  /** The image every trial starts from; also the pristine copy its content is compared with. */
  template: string;
  /** Bytes the template allocates, and what a completed rewrite must get below. */
  rewrittenBelow: number;
  policy: string;
  /** Leave a stale temporary image and journal beside the image first (a remove-leftovers step). */
  staleLeftovers?: boolean;
  point: KillPoint;
  /** Names the trial in failures: the class, its number, the kill point, the seed. */
  label: string;
  tally: ClassTally;
  /** Processes the kill left, for the final clean-up. */
  strays: ProcInfo[];
}

const KILL_RUN_MS = 90_000;
const NEXT_RUN_MS = 120_000;

/** Runs the trial; resolves with why not when the CLI ended before the kill. */
export async function hostKillTrial(t: HostTrial): Promise<true | Missed> {
  const h = t.hypervisor;
  const { dir, image } = h.newDisk(t.template);
  try {
    if (t.staleLeftovers) leaveStaleRewrite(h, dir, image);
    const inode = statSync(image).ino;
    const args = h.files(image, t.policy);
    const killed = await runAndKill(["apply", "--yes", "--verbose", ...args], h.env, t.point, KILL_RUN_MS);
    t.strays.push(...killed.children);
    if (!killed.killed) return missed(killed);

    const tally = t.tally;
    const problems: string[] = [];
    tally.trials += 1;
    tally["killed-in"][killed.lastStep] = (tally["killed-in"][killed.lastStep] ?? 0) + 1;
    if (convertRunning(dir)) tally["still-running-after-kill"] += 1;
    const afterKill = await imageOutcome(image, t.template, inode);
    tally.outcomes[afterKill.outcome] += 1;
    if (afterKill.outcome === "lost") problems.push(`after the kill: ${afterKill.detail}`);
    const stateAfterKill = listing(dir);

    const next = await runBounded(["apply", "--yes", ...args], h.env, NEXT_RUN_MS);
    const nextEnded = Date.now();
    observe(tally, `next run: ${recovery(next.stdout)}`);
    const nextProblems: string[] = [];
    if (next.code !== 0) nextProblems.push(`next run: ${shown(next)}`);
    const stray = await settled(dir, 5000);
    if (stray.length > 0) nextProblems.push(`processes still naming ${dir} after the next run: ${stray}`);
    const left = leftoversBeside(image);
    if (left.length > 0) {
      tally["leftovers-after-next-run"] += 1;
      nextProblems.push(
        `leftovers after the next run (which ended ${new Date(nextEnded).toISOString()}): ${left.map((n) => described(join(dir, n))).join(", ")}; processes naming the dir: ${describeProcesses(dir)}; next run: ${shown(next)}`,
      );
    }
    nextProblems.push(...(await backupProblems(image, t.template)));
    const content = await imageOutcome(image, t.template, inode);
    if (content.outcome === "lost") nextProblems.push(`after the next run: ${content.detail}`);
    const allocated = statSync(image).blocks * 512;
    if (allocated >= t.rewrittenBelow)
      nextProblems.push(`not rewritten: allocates ${allocated} bytes (expected < ${t.rewrittenBelow})`);

    const before = identityOf(image);
    const further = await runBounded(["apply", "--yes", ...args], h.env, NEXT_RUN_MS);
    if (further.code !== 0 || !/No changes: nothing to apply/.test(further.stdout))
      nextProblems.push(`further run did not report nothing to change: ${shown(further)}`);
    if (identityOf(image) !== before) nextProblems.push("further run touched the image");

    if (nextProblems.length === 0) tally["next-run-completed"] += 1;
    problems.push(...nextProblems);
    if (problems.length > 0) {
      tally.failures.push(
        `${t.label}: killed in ${killed.lastStep} (trigger: ${killed.trigger ?? "none"}); beside the image after the kill: ${stateAfterKill}; ${problems.join(" | ")}`,
      );
    }
    return true;
  } finally {
    // Whatever a detached conversion may still do, it is given a moment before the dir goes; a
    // process of this trial still there then (already a failure above) is ended by PID.
    if ((await settled(dir, 5000)).length > 0) await endLeftovers([dir], []);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** How the next run went on from what the kill left, as its plan says. */
function recovery(stdout: string): string {
  if (/conversion still runs on the host/.test(stdout)) return "reattached to the conversion still running";
  if (/conversion finished on the host/.test(stdout))
    return "took the conversion that finished after the kill";
  if (/left a verified rewrite/.test(stdout)) return "swapped in the verified copy";
  if (/already replaced this image/.test(stdout)) return "only removed the journal";
  if (/remove leftovers of an interrupted run/.test(stdout))
    return "removed the leftovers and converted again";
  return "converted from the start (nothing was left)";
}

/** What an earlier killed run leaves: a partial temporary image and a journal of its conversion. */
function leaveStaleRewrite(h: Hypervisor, dir: string, image: string): void {
  const temp = join(dir, ".vm.qcow2.reclaim-tmp");
  const journal = join(dir, ".vm.qcow2.reclaim-journal");
  writeFileSync(temp, Buffer.alloc(1024 * 1024, 0x17));
  const st = statSync(image);
  writeFileSync(
    journal,
    `${JSON.stringify({
      version: 1,
      image,
      temp,
      phase: "converting",
      original: { device: st.dev, inode: st.ino, size: st.size, mtimeSec: Math.floor(st.mtimeMs / 1000) },
      startedAt: new Date(Date.now() - 3600_000).toISOString(),
    })}\n`,
  );
  h.own(temp);
  h.own(journal);
}

/** keep_backup keeps one backup, a hard link to the original: same content as the template. */
async function backupProblems(image: string, template: string): Promise<string[]> {
  const backups = backupsOf(image);
  if (backups.length > 1) return [`${backups.length} backups: ${backups.join(", ")}`];
  const out: string[] = [];
  for (const b of backups) {
    const r = await qemuImgExit(["compare", "-f", "qcow2", "-F", "qcow2", template, b]);
    if (r.code !== 0) out.push(`backup ${b} differs from the original: ${r.out}`);
  }
  return out;
}

/** A file's size and change time, for a failure's message. */
function described(path: string): string {
  try {
    const st = statSync(path);
    return `${path} (${st.size} B, changed ${st.ctime.toISOString()})`;
  } catch {
    return `${path} (gone)`;
  }
}

function describeProcesses(dir: string): string {
  const lines = processesMentioning(dir).map((pid) => {
    try {
      return `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").slice(0, 300)}`;
    } catch {
      return `${pid}: (gone)`;
    }
  });
  return lines.length > 0 ? lines.join(" ; ") : "none";
}

function listing(dir: string): string {
  return (
    readdirSync(dir)
      .map((n) => `${n} (${statSync(join(dir, n)).size} B)`)
      .join(", ") || "(empty)"
  );
}
