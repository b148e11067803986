/**
 * The guest-side task: free blocks inside a running Linux guest, before the host rewrites its
 * image. `checkZeroGuest` reads the guest's filesystems and decides per filesystem (trim where
 * discard reaches the disk, else fill); `applyZeroGuest` carries out exactly that.
 */
import type { GuestOs, Reserve, ZeroMode } from "../config/model.js";
import { formatBytes } from "../config/units.js";
import {
  dfArgv,
  discardArgv,
  type GuestFilesystem,
  mountsArgv,
  parseGuestFilesystems,
} from "../guest/filesystems.js";
import {
  parseVolumes,
  retrimArgv,
  retrimUnsupported,
  sdeleteArgv,
  volumesArgv,
  volumesAsFilesystems,
} from "../guest/windows.js";
import {
  FILL_BUSY_EXIT,
  FILL_FILE,
  fillArgv,
  fillFilePath,
  fillSize,
  parseFilled,
  parseStoppedAtReserve,
  parseTrimmed,
  removeFillLeftoversArgv,
  reserveBytes,
  trimArgv,
} from "../guest/zero-commands.js";
import type { GuestZeroPlan, ZeroStep } from "../plan/plan.js";
import type { ZeroOutcome } from "../run/results.js";
import { runBatch } from "../transport/batch.js";
import { type CommandSpec, describeFailure, type Transport } from "../transport/transport.js";

const MiB = 1024 * 1024;
/** A fill writes at least ~150 MB/s here under emulation; this bounds even a large filesystem. */
const FILL_TIMEOUT_MS = 6 * 60 * 60 * 1000;
const TRIM_TIMEOUT_MS = 60 * 60 * 1000;

/** What the host side knows that changes the guest-side decision. */
export interface HostSide {
  /** What the guest's images may grow by on the hypervisor (free space beside them, less a margin). */
  roomBytes?: number;
  /** libvirt's disk definitions say whether discards reach the images (discard='unmap'). */
  discardReachesImages?: boolean;
  /**
   * What the guest's images allocate on the host now, and the policy's thresholds: a fill is
   * worth it only when the images hold that much more than the guest's files use.
   */
  slack?: { allocatedBytes: number; minReclaimableBytes: number; minRatio: number };
  /**
   * Why the images will not be rewritten in this run (a running guest that is not shut down):
   * zeros written now would only grow them, so no fill is planned.
   */
  noRewrite?: string;
}

/**
 * Why a fill would give back too little to be worth writing, or undefined. The images allocate
 * their files' data plus what a fill could drop; once an image has been rewritten that is close
 * to nothing, and filling again would only grow it and ask for another rewrite (and downtime).
 */
export function fillNotWorth(
  filesystems: readonly GuestFilesystem[],
  slack: HostSide["slack"],
  reserve?: Reserve,
): string | undefined {
  if (!slack || slack.allocatedBytes <= 0) return undefined;
  const used = filesystems.reduce((sum, fs) => sum + fs.usedBytes, 0);
  // What the reserve keeps free is never zeroed: old data there stays allocated whatever we do.
  const kept = reserve
    ? filesystems.reduce((sum, fs) => sum + Math.min(fs.availableBytes, reserveBytes(fs, reserve)), 0)
    : 0;
  const beyond = Math.max(0, slack.allocatedBytes - used - kept);
  const ratio = beyond / slack.allocatedBytes;
  if (beyond >= slack.minReclaimableBytes && ratio >= slack.minRatio) return undefined;
  const keptText = kept > 0 ? ` and ${formatBytes(kept)} the fill reserve keeps free` : "";
  return `the images allocate ${formatBytes(slack.allocatedBytes)} for ${formatBytes(used)} of files${keptText}: a fill could give back at most ${formatBytes(beyond)}, below the policy's thresholds`;
}

/** Pure: what to do on each filesystem for a zero mode. */
export function decideZero(
  guest: string,
  filesystems: readonly GuestFilesystem[],
  mode: ZeroMode,
  reserve: Reserve,
  host: HostSide = {},
  os: GuestOs = "linux",
): GuestZeroPlan {
  let room = host.roomBytes ?? Number.POSITIVE_INFINITY;
  // zero: auto picks a fill only where it can pay off; an explicit fill is the user's call.
  const notWorth =
    host.noRewrite && mode === "auto"
      ? `no fill: ${host.noRewrite}, and zeros written now would only grow its image until a rewrite`
      : fillNotWorth(filesystems, host.slack, mode === "none" || os === "windows" ? undefined : reserve);
  const steps: ZeroStep[] = filesystems.map((fs): ZeroStep => {
    if (mode === "none") return { kind: "skip", mount: fs.mount, reason: "zero: none" };
    const trimReaches = fs.discard && host.discardReachesImages !== false;
    if (mode === "trim" || (mode === "auto" && trimReaches)) {
      return fs.discard
        ? { kind: "trim", mount: fs.mount }
        : {
            kind: "skip",
            mount: fs.mount,
            reason:
              "the disk under it does not pass discard, so a trim would free nothing (zero: fill or auto would)",
          };
    }
    if (notWorth) return { kind: "skip", mount: fs.mount, reason: notWorth };
    // sdelete -z zeroes all the free space (briefly filling the volume): it keeps no reserve.
    const size = os === "windows" ? windowsFillSize(fs) : fillSize(fs, reserve);
    if ("skip" in size) return { kind: "skip", mount: fs.mount, reason: size.skip };
    const tooBig = roomProblem(size.mib * MiB, room);
    if (tooBig) return { kind: "skip", mount: fs.mount, reason: tooBig };
    room -= size.mib * MiB;
    return { kind: "fill", mount: fs.mount, mib: size.mib };
  });
  const fillBytes = steps.reduce((sum, s) => sum + (s.kind === "fill" ? s.mib * MiB : 0), 0);
  return {
    guest,
    ...(os === "windows" ? { os } : {}),
    mode,
    reserve,
    filesystems: [...filesystems],
    leftovers: [],
    steps,
    fillBytes,
    ...(host.roomBytes !== undefined ? { hostRoomBytes: host.roomBytes } : {}),
    ...(notWorth ? { fillNotWorth: notWorth } : {}),
  };
}

function windowsFillSize(fs: GuestFilesystem): { mib: number } | { skip: string } {
  const mib = Math.floor(fs.availableBytes / MiB);
  return mib < 1 ? { skip: `${fs.mount}: no free space to zero` } : { mib };
}

/**
 * Zeros written into free space are stored as data until the rewrite: the image can grow by all
 * of them. A fill the hypervisor has no room for would fill its disk under every guest on it.
 */
function roomProblem(bytes: number, room: number): string | undefined {
  if (bytes <= room) return undefined;
  return `a fill of ${formatBytes(bytes)} could grow the image by as much, and the hypervisor has room for ${formatBytes(Math.max(0, room))} beside it; not filled`;
}

/** Read-only: the guest's filesystems, leftovers of earlier fills, and the decision. */
export async function checkZeroGuest(
  transport: Transport,
  guest: string,
  mode: ZeroMode,
  reserve: Reserve,
  host: HostSide = {},
  os: GuestOs = "linux",
): Promise<GuestZeroPlan> {
  if (os === "windows") {
    const volumes = await transport.run({ argv: volumesArgv, timeoutMs: 60_000 });
    if (volumes.exitCode !== 0) throw new Error(describeFailure(volumes));
    const filesystems = volumesAsFilesystems(parseVolumes(volumes.stdout));
    return decideZero(guest, filesystems, mode, reserve, host, os);
  }
  const [mounts, df, discard] = await runBatch(transport, [mountsArgv, dfArgv, discardArgv]);
  if (!mounts || !df || !discard) throw new Error("the guest answered too few facts");
  const found = parseGuestFilesystems(mounts, df, discard);
  const probes = await runBatch(
    transport,
    found.map((fs) => ["stat", "-c", "%b %B", "--", fillFilePath(fs.mount)]),
  );
  // A fill file an earlier run left is removed before anything is written: its blocks are free
  // space, not the guest's files (counted as files, a fill would look worthless).
  const leftoverBytes = found.map((_, i) => {
    const r = probes[i];
    const m = r?.exitCode === 0 ? /^(\d+) (\d+)/.exec(r.stdout) : null;
    return m ? Number(m[1]) * Number(m[2]) : undefined;
  });
  const filesystems = found.map((fs, i) => {
    const bytes = Math.min(leftoverBytes[i] ?? 0, fs.usedBytes);
    return bytes ? { ...fs, usedBytes: fs.usedBytes - bytes, availableBytes: fs.availableBytes + bytes } : fs;
  });
  const plan = decideZero(guest, filesystems, mode, reserve, host);
  plan.leftovers = found.filter((_, i) => leftoverBytes[i] !== undefined).map((fs) => fs.mount);
  return plan;
}

/** Carries out the plan, one filesystem after another, and reports each as data. */
/**
 * Carries out the plan, one filesystem after another, and reports each as data.
 *
 * With `zero: auto`, a guest cannot tell whether its discards reach the image file (QEMU's
 * discard=ignore still shows a disk that accepts them), so `hostAllocated` — the bytes the guest's
 * images allocate on the host — is read before and after the trims; if a trim freed space inside
 * the guest but the host saw next to nothing of it, those filesystems are zero-filled instead.
 */
export async function applyZeroGuest(
  plan: GuestZeroPlan,
  transport: Transport,
  signal?: AbortSignal,
  hostAllocated?: () => Promise<number>,
  progress?: { onFill: FillProgress; everyMs?: number },
): Promise<ZeroOutcome[]> {
  const run: Run = (argv, timeoutMs, extra = {}) =>
    transport.run({ argv, timeoutMs, ...extra, ...(signal ? { signal } : {}) });
  if (transport.streamsStdin) run.streamsStdin = true;
  if (progress)
    run.watchFill = (mount, totalBytes, done) =>
      watchFill(transport, mount, totalBytes, done, progress.onFill, progress.everyMs ?? FILL_PROGRESS_MS);
  if (plan.leftovers.length > 0) {
    const removed = await run(removeFillLeftoversArgv(plan.leftovers), 60_000);
    if (removed.exitCode !== 0)
      throw new Error(`cannot remove ${FILL_FILE} left by an earlier run: ${describeFailure(removed)}`);
  }
  const confirm =
    plan.mode === "auto" && hostAllocated !== undefined && plan.steps.some((s) => s.kind === "trim");
  const before = confirm ? await hostAllocated() : undefined;
  const outcomes: ZeroOutcome[] = [];
  for (const step of plan.steps) {
    if (step.kind === "skip")
      outcomes.push({ mount: step.mount, kind: "skip", ok: true, bytes: 0, message: step.reason });
    else if (plan.os === "windows") outcomes.push(await windowsStep(step, plan, run));
    else if (step.kind === "trim") outcomes.push(await trim(step.mount, run));
    else outcomes.push(await fill(step.mount, step.mib, keepFor(plan, step.mount), run));
  }
  if (before === undefined || !hostAllocated) return outcomes;
  const trimmed = outcomes.filter((o) => o.kind === "trim" && o.ok).reduce((sum, o) => sum + o.bytes, 0);
  const after = await hostAllocated();
  if (!trimDidNotReachHost(trimmed, before - after)) return outcomes;
  // The discards stopped short of the image file: write zeros instead, where the reserve and the
  // hypervisor's room allow.
  let room = (plan.hostRoomBytes ?? Number.POSITIVE_INFINITY) - plan.fillBytes;
  for (const [i, outcome] of outcomes.entries()) {
    if (outcome.kind !== "trim" || !outcome.ok) continue;
    const why = `trim freed ${formatBytes(outcome.bytes)} in the guest but the host's image gave back only ${formatBytes(Math.max(0, before - after))} (discard does not reach it)`;
    const fs = plan.filesystems.find((f) => f.mount === outcome.mount);
    const size = fs
      ? plan.os === "windows"
        ? windowsFillSize(fs)
        : fillSize(fs, plan.reserve)
      : { skip: `${outcome.mount}: not among the guest's filesystems` };
    const skip = "skip" in size ? size.skip : (plan.fillNotWorth ?? roomProblem(size.mib * MiB, room));
    if (skip !== undefined || "skip" in size) {
      outcomes[i] = { ...outcome, message: `${why}; ${skip}` };
      continue;
    }
    room -= size.mib * MiB;
    const filled =
      plan.os === "windows"
        ? await sdelete(outcome.mount, size.mib, run)
        : await fill(outcome.mount, size.mib, keepFor(plan, outcome.mount), run);
    outcomes[i] = { ...filled, message: `${why}; filled instead: ${filled.message}` };
  }
  return outcomes;
}

/** A trim of a few MiB proves nothing; one of more that the host barely saw did not reach it. */
export function trimDidNotReachHost(trimmedInGuest: number, freedOnHost: number): boolean {
  return trimmedInGuest >= 16 * MiB && freedOnHost < trimmedInGuest * 0.1;
}

/** Zeros written so far into a filesystem's fill file, and what the fill will write in all. */
export type FillProgress = (mount: string, bytes: number, totalBytes: number) => void;

type Run = ((
  argv: string[],
  timeoutMs: number,
  extra?: Partial<Pick<CommandSpec, "holdStdinUntil" | "stdinKeepaliveMs">>,
) => ReturnType<Transport["run"]>) & {
  streamsStdin?: boolean;
  /** Reports a running fill's progress until `done` settles. */
  watchFill?: (mount: string, totalBytes: number, done: Promise<unknown>) => Promise<void>;
};

/** How often a fill hears from us; it stops itself after 30 s without a word. */
const FILL_KEEPALIVE_MS = 10_000;

/** How often a running fill's file is looked at, for progress. */
const FILL_PROGRESS_MS = 5_000;

/**
 * Reads the fill file's size every few seconds while the fill runs (a second, short command: busybox
 * dd has no status=progress). Bounded by the fill's own timeout.
 */
async function watchFill(
  transport: Transport,
  mount: string,
  totalBytes: number,
  done: Promise<unknown>,
  report: FillProgress,
  everyMs: number,
): Promise<void> {
  let finished = false;
  const over = done.then(
    () => {
      finished = true;
    },
    () => {
      finished = true;
    },
  );
  for (let i = 0; i < FILL_TIMEOUT_MS / everyMs && !finished; i++) {
    await Promise.race([over, new Promise((r) => setTimeout(r, everyMs).unref())]);
    if (finished) return;
    const r = await transport
      .run({ argv: ["stat", "-c", "%s", "--", fillFilePath(mount)], timeoutMs: 10_000 })
      .catch(() => undefined);
    const bytes = r?.exitCode === 0 ? Number(r.stdout.trim()) : Number.NaN;
    if (!finished && Number.isFinite(bytes)) report(mount, bytes, totalBytes);
  }
}

async function trim(mount: string, run: Run): Promise<ZeroOutcome> {
  const r = await run(trimArgv(mount), TRIM_TIMEOUT_MS);
  const bytes = parseTrimmed(r.stdout) ?? 0;
  const ok = r.exitCode === 0;
  return {
    mount,
    kind: "trim",
    ok,
    bytes,
    message: ok ? `trimmed ${formatBytes(bytes)}` : describeFailure(r),
  };
}

/**
 * Windows: retrim where the volume supports it; where it does not (or the plan fills), sdelete
 * zeroes the free space. With zero: trim, an unsupported retrim is reported, not replaced.
 */
async function windowsStep(
  step: Exclude<ZeroStep, { kind: "skip" }>,
  plan: GuestZeroPlan,
  run: Run,
): Promise<ZeroOutcome> {
  if (step.kind === "fill") return sdelete(step.mount, step.mib, run);
  const fs = plan.filesystems.find((f) => f.mount === step.mount);
  const free = fs ? windowsFillSize(fs) : { mib: 0 };
  const volume = "mib" in free ? free.mib : 0;
  const r = await run(retrimArgv(step.mount), TRIM_TIMEOUT_MS);
  if (r.exitCode === 0)
    return {
      mount: step.mount,
      kind: "trim",
      ok: true,
      bytes: 0,
      message: "retrimmed (Optimize-Volume -ReTrim)",
    };
  if (retrimUnsupported(`${r.stdout}\n${r.stderr}`) && plan.mode !== "trim" && volume > 0) {
    const zeroed = await sdelete(step.mount, volume, run);
    return { ...zeroed, message: `the volume does not support retrim; ${zeroed.message}` };
  }
  return { mount: step.mount, kind: "trim", ok: false, bytes: 0, message: describeFailure(r) };
}

async function sdelete(mount: string, mib: number, run: Run): Promise<ZeroOutcome> {
  // sdelete 2.0 has been seen hanging at 100%: the timeout bounds it.
  const r = await run(sdeleteArgv(mount), FILL_TIMEOUT_MS);
  const ok = r.exitCode === 0;
  return {
    mount,
    kind: "fill",
    ok,
    // sdelete does not say how much it wrote: the free space it was asked to zero.
    bytes: ok ? mib * MiB : 0,
    message: ok
      ? `zeroed the free space with sdelete -z (about ${formatBytes(mib * MiB)})`
      : describeFailure(r),
  };
}

/** The reserve a fill keeps free on a mount, in bytes. */
function keepFor(plan: GuestZeroPlan, mount: string): number {
  const fs = plan.filesystems.find((f) => f.mount === mount);
  return fs ? reserveBytes(fs, plan.reserve) : 0;
}

async function fill(mount: string, mib: number, keepBytes: number, run: Run): Promise<ZeroOutcome> {
  // Where input streams, the fill keeps it open and hears our newlines: if we go away (killed,
  // connection cut), it stops by itself and removes its file, instead of running on unseen.
  const done = new AbortController();
  const watchInput = run.streamsStdin === true;
  const running = run(
    fillArgv(mount, mib, keepBytes, watchInput),
    FILL_TIMEOUT_MS,
    watchInput ? { holdStdinUntil: done.signal, stdinKeepaliveMs: FILL_KEEPALIVE_MS } : {},
  );
  const watching = run.watchFill?.(mount, mib * MiB, running);
  const r = await running.finally(() => done.abort());
  await watching;
  if (r.exitCode === FILL_BUSY_EXIT)
    return {
      mount,
      kind: "fill",
      ok: true,
      bytes: 0,
      message: "a fill from an earlier run still runs here; left to finish and remove its file",
    };
  const bytes = parseFilled(r.stdout) ?? 0;
  // A filesystem that filled up under the fill (another writer) ends dd early: the fill file is
  // gone either way, and the zeros written still count.
  const full = /No space left on device/.test(r.stdout);
  const atReserve = parseStoppedAtReserve(r.stdout);
  const message =
    r.exitCode === 0
      ? atReserve === undefined
        ? `wrote ${formatBytes(bytes)} of zeros`
        : `wrote ${formatBytes(bytes)} of zeros, then stopped: the free space fell to ${formatBytes(atReserve * MiB)} (another writer), the reserve is kept`
      : full
        ? `the filesystem filled up after ${formatBytes(bytes)}; stopped`
        : describeFailure(r);
  return { mount, kind: "fill", ok: r.exitCode === 0 || full, bytes, message };
}
