/**
 * A conversion runs detached on the hypervisor, so that losing the runner (killed, or its SSH
 * connection cut) does not lose the work: the next run, or this one once the connection returns,
 * reattaches to it or takes its result.
 *
 * The worker is `qemu-img convert` under `setsid`, with its output in a log file beside the image
 * and its exit status written to a second file when it ends. For as long as it lives it holds a
 * flock on the log file, so "is it still running?" has an answer that no reused pid can fake.
 * All of this is shell run with the data as positional parameters, never pasted into the script.
 */
import type { ImagePaths } from "../image/paths.js";
import { shellScript } from "../transport/quote.js";

export interface WorkerFiles {
  /** The worker's output (qemu-img -p progress and messages); locked while it runs. */
  log: string;
  /** The worker's exit status, written when it ends. */
  exit: string;
}

/** The worker files of an image (beside it: see image/paths.ts). */
export function workerFilesOf(paths: Pick<ImagePaths, "convertLog" | "convertExit">): WorkerFiles {
  return { log: paths.convertLog, exit: paths.convertExit };
}

/** Every file a worker may leave, its status being written included: what removing it removes. */
export function workerFileNames(files: WorkerFiles): string[] {
  return [files.log, files.exit, `${files.exit}.new`];
}

/** Exit status of the start script when a worker of this image is already running. */
export const WORKER_BUSY_EXIT = 75;

/**
 * Starts the worker and returns once it holds its lock. The lock is taken here, before the fork,
 * and inherited by the detached process: no window in which two workers could both start.
 */
const START = `log=$1 exitf=$2; shift 2
exec 9>>"$log" || exit 1
flock -n 9 || { echo "a conversion of this image is already running on this host" >&2; exit ${WORKER_BUSY_EXIT}; }
: > "$log" && rm -f -- "$exitf" || exit 1
# The status file's blocks are taken now: on a filesystem the conversion filled up, writing the
# status in place still works (a new file could not be made), and the cause is not lost.
printf '%-8s\n' '' > "$exitf.new" || exit 1
setsid -f sh -c 'log=$1 exitf=$2; shift 2
printf "pid %s\\n" "$$" >> "$log"
"$@" >> "$log" 2>&1
rc=$?
printf "%-8s\\n" "$rc" 1<>"$exitf.new" && mv -f -- "$exitf.new" "$exitf"' reclaim "$log" "$exitf" "$@" </dev/null >/dev/null 2>&1`;

export function startWorkerArgv(files: WorkerFiles, argv: readonly string[]): string[] {
  return shellScript(START, [files.log, files.exit, ...argv]);
}

/**
 * Follows a worker until it ends, printing its latest progress line every second, then one final
 * line: `reclaim-worker exit N`, or `reclaim-worker gone` when it died without a status (the host
 * rebooted, or someone killed it). Bounded by the worker's life; a watcher whose reader went away
 * dies of SIGPIPE at its next line.
 */
const WATCH = `log=$1 exitf=$2
# Opened once, never created: flock(1) on a path would create a log the worker already removed.
# (Tested first: a failed redirection of exec ends a POSIX shell before any "||".)
[ -e "$log" ] || { printf '\\nreclaim-worker gone\\n'; exit 0; }
exec 8<"$log" || exit 1
progress() { tail -c 256 -- "$log" 2>/dev/null | tr '\\r' '\\n' | grep '/100%)' | tail -n 1; }
while :; do
  if [ -e "$exitf" ]; then progress; printf '\\nreclaim-worker exit %s\\n' "$(cat -- "$exitf")"; exit 0; fi
  if flock -n 8 2>/dev/null; then
    [ -e "$exitf" ] && continue
    printf '\\nreclaim-worker gone\\n'; exit 0
  fi
  # Written by this shell itself: once its reader is gone the write fails and the watch ends.
  printf '%s\\n' "$(progress)" || exit 0
  sleep 1
done`;

export function watchWorkerArgv(files: WorkerFiles): string[] {
  return shellScript(WATCH, [files.log, files.exit]);
}

/** The state of a worker, read once (for the facts). */
const STATE = `log=$1 exitf=$2
[ -e "$log" ] || { echo none; exit 0; }
exec 8<"$log" || exit 1
if flock -n 8 2>/dev/null; then
  if [ -e "$exitf" ]; then printf 'exit %s\\n' "$(cat -- "$exitf")"; else echo gone; fi
else echo running; fi`;

export function workerStateArgv(files: WorkerFiles): string[] {
  return shellScript(STATE, [files.log, files.exit]);
}

/**
 * Stops a running worker (its whole process group: the shell and qemu-img) and waits up to 30 s
 * for its lock to be released, so that removing its files afterwards frees their space.
 */
const STOP = `log=$1
[ -e "$log" ] || exit 0
exec 8<"$log" || exit 1
flock -n 8 2>/dev/null && exit 0
# A worker started a moment ago may not have written its pid yet (it holds the lock already).
i=0; pid=
while [ -z "$pid" ] && [ "$i" -lt 100 ]; do
  pid=$(sed -n '1s/^pid \\([0-9][0-9]*\\)$/\\1/p' "$log"); [ -n "$pid" ] || sleep 0.1; i=$((i + 1))
done
# Not "kill --": dash's kill takes no "--", and a negative number after the signal is a group.
[ -n "$pid" ] && kill -TERM "-$pid" 2>/dev/null
flock -w 30 8`;

export function stopWorkerArgv(files: WorkerFiles): string[] {
  return shellScript(STOP, [files.log]);
}

export type WorkerState =
  | { state: "none" }
  | { state: "running" }
  | { state: "exited"; code: number }
  | { state: "gone" };

export function parseWorkerState(stdout: string): WorkerState {
  const line = stdout.trim();
  if (line === "none" || line === "running" || line === "gone") return { state: line };
  const exited = /^exit (\d+)\s*$/.exec(line);
  if (exited) return { state: "exited", code: Number(exited[1]) };
  throw new Error(`unexpected worker state: ${JSON.stringify(line.slice(0, 80))}`);
}

/** The end of a watch: the worker's exit status, or undefined when it died without one. */
export function parseWatchEnd(stdout: string): { ended: true; code?: number } | { ended: false } {
  const match = /reclaim-worker (?:exit (\d+)|gone)\s*$/.exec(stdout);
  if (!match) return { ended: false };
  return match[1] === undefined ? { ended: true } : { ended: true, code: Number(match[1]) };
}

/** The last lines the worker wrote besides progress, for a failure message. */
export function workerTailArgv(files: WorkerFiles): string[] {
  return shellScript(
    `tail -c 2048 -- "$1" | tr '\\r' '\\n' | grep -v -e '/100%)' -e '^pid [0-9]*$' -e '^ *$' | tail -n 3`,
    [files.log],
  );
}
