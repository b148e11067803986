/**
 * A machine-wide lock for lab changes that several vitest workers could make at once (namespaces,
 * the root namespace's safety route). Held by a `flock` child process, so the kernel releases it
 * if this process dies.
 */
import { spawn } from "node:child_process";

const LOCK_FILE = "/run/reclaim-lab.lock";

export function withHostLock<T>(fn: () => T | Promise<T>, timeoutMs = 20_000): Promise<T> {
  return withFileLock(LOCK_FILE, fn, timeoutMs);
}

/** Runs `fn` holding an exclusive flock on `path` (created if missing), waiting up to `timeoutMs`. */
export async function withFileLock<T>(path: string, fn: () => T | Promise<T>, timeoutMs: number): Promise<T> {
  const holder = spawn(
    "flock",
    ["-w", String(Math.ceil(timeoutMs / 1000)), path, "sh", "-c", "echo locked; exec cat"],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  const exited = new Promise<void>((resolve) => holder.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      holder.kill("SIGKILL");
      reject(new Error(`lab lock ${path} not acquired within ${timeoutMs} ms`));
    }, timeoutMs + 2000);
    holder.stdout.setEncoding("utf8").on("data", (c: string) => {
      out += c;
      if (out.includes("locked")) {
        clearTimeout(timer);
        resolve();
      }
    });
    holder.stderr.setEncoding("utf8").on("data", (c: string) => {
      err += c;
    });
    holder.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    holder.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`lab lock ${path}: flock exited ${code}: ${err.trim()}`));
    });
  });
  try {
    return await fn();
  } finally {
    holder.stdin.end();
    const timer = setTimeout(() => holder.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(timer);
  }
}
