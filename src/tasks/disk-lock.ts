/**
 * One runner per disk: before a disk's steps, reclaim takes an exclusive `flock` on the hypervisor,
 * in /run/lock (world-writable with the sticky bit on Debian, a tmpfs: no lock outlives a reboot;
 * /tmp where there is no /run/lock), named after the image's path. The lock is held by a remote
 * shell that reads its standard input to the end: when we release the lock, or die, or lose the
 * connection, that input ends (or falls silent) and the lock goes with it. A second runner waits up to its lock timeout and then leaves the disk alone,
 * saying who holds it and since when (the holder writes that into the lock file).
 */
import { createHash } from "node:crypto";
import { shellScript } from "../transport/quote.js";
import { describeFailure, type Transport } from "../transport/transport.js";

/** The lock file's name for an image (in /run/lock, or /tmp where there is none). */
export function lockName(imagePath: string): string {
  const digest = createHash("sha256").update(imagePath).digest("hex").slice(0, 16);
  return `reclaim-${digest}.lock`;
}

/**
 * The holder sends a newline this often; the lock goes after this long without one. A link that
 * died without a word (no FIN: a cable, a firewall) otherwise keeps the lock until the server's
 * TCP notices, which by default takes hours.
 */
const KEEPALIVE_MS = 10_000;
const SILENCE_LIMIT_S = 60;

/**
 * $1 lock file name, $2 seconds to wait, $3 who we are, $4 seconds of silence that end the hold. Exit 4: still locked after the wait (the
 * holder's line on stderr). "locked" on stdout once held; then it holds until its input ends or
 * falls silent. The file is opened read-only (flock needs no more), and made writable for every
 * runner's note.
 */
const LOCK_SCRIPT = `d=/run/lock; { [ -d "$d" ] && [ -w "$d" ]; } || d=/tmp
f=$d/$1
[ -e "$f" ] || { : >>"$f" && chmod 0666 "$f"; } 2>/dev/null
exec 9<"$f" || exit 3
if ! flock -x -w "$2" 9; then cat "$f" >&2; exit 4; fi
printf '%s\n' "$3" 2>/dev/null >"$f" || true
echo locked
while [ "$(timeout "$4" head -c 1 | wc -c)" = 1 ]; do :; done
: 2>/dev/null >"$f" || true`;

export function lockArgv(
  imagePath: string,
  waitSeconds: number,
  owner: string,
  silenceLimitSeconds = SILENCE_LIMIT_S,
): string[] {
  return shellScript(LOCK_SCRIPT, [
    lockName(imagePath),
    String(Math.max(0, Math.ceil(waitSeconds))),
    owner,
    String(silenceLimitSeconds),
  ]);
}

export type DiskLock = { held: true; release(): Promise<void> } | { held: false; reason: string };

/** Takes the disk's lock, waiting at most `waitMs`; the caller must release a held lock. */
export async function acquireDiskLock(
  transport: Transport,
  imagePath: string,
  options: {
    waitMs: number;
    owner: string;
    signal?: AbortSignal;
    /** For tests: how often the holder speaks, and how long a silence ends the hold. */
    keepaliveMs?: number;
    silenceLimitSeconds?: number;
  },
): Promise<DiskLock> {
  const release = new AbortController();
  let onLocked: () => void = () => {};
  const locked = new Promise<void>((resolve) => {
    onLocked = resolve;
  });
  let out = "";
  const running = transport.run({
    argv: lockArgv(imagePath, options.waitMs / 1000, options.owner, options.silenceLimitSeconds),
    holdStdinUntil: release.signal,
    stdinKeepaliveMs: options.keepaliveMs ?? KEEPALIVE_MS,
    ...(options.signal ? { signal: options.signal } : {}),
    onStdout: (chunk) => {
      out += chunk;
      if (/^locked$/m.test(out)) onLocked();
    },
  });
  const first = await Promise.race([locked.then(() => "locked" as const), running]);
  if (first === "locked") {
    return {
      held: true,
      release: async () => {
        release.abort();
        await running.catch(() => undefined);
      },
    };
  }
  release.abort();
  if (first.exitCode === 4) {
    const holder = first.stderr.trim().split("\n")[0];
    return {
      held: false,
      reason: `another runner is working on this disk (lock ${lockName(imagePath)}${holder ? `, held by ${holder}` : ""}); waited ${Math.round(options.waitMs / 1000)} s`,
    };
  }
  return { held: false, reason: `cannot take this disk's lock: ${describeFailure(first)}` };
}
