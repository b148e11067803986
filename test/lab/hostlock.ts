/**
 * A machine-wide lock for lab changes that several vitest workers could make at once (namespaces,
 * the root namespace's safety route). Held by a `flock` child process, so the kernel releases it
 * if this process dies.
 */
import { withFileLock as withSharedFileLock } from "../../src/demo/file-lock.js";

const LOCK_FILE = "/run/reclaim-lab.lock";

export function withHostLock<T>(fn: () => T | Promise<T>, timeoutMs = 20_000): Promise<T> {
  return withFileLock(LOCK_FILE, fn, timeoutMs);
}

/** Runs `fn` holding an exclusive flock on `path` (created if missing), waiting up to `timeoutMs`. */
export function withFileLock<T>(path: string, fn: () => T | Promise<T>, timeoutMs: number): Promise<T> {
  return withSharedFileLock(path, async () => fn(), timeoutMs);
}
