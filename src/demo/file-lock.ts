/**
 * An exclusive lock on a file shared by processes of this machine (two builds of the guest
 * kernel cache at once). util-linux's `flock` holds it and the kernel releases it when the holder
 * dies, so a killed process never leaves the lock taken.
 */
import { spawn } from "node:child_process";
import { RunError } from "../errors.js";

/**
 * Runs `fn` holding an exclusive flock on `path` (created if missing), waiting at most `timeoutMs`
 * for it; throws a RunError when the lock is not had in time.
 */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  // flock runs `cat` once it holds the lock: what we write comes back then, and closing cat's
  // input ends it, which releases the lock. No shell involved.
  const holder = spawn("flock", ["-w", String(Math.ceil(timeoutMs / 1000)), "--", path, "cat"], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => holder.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => {
      holder.kill("SIGKILL");
      reject(new RunError(`the lock ${path} was not had within ${timeoutMs} ms`));
    }, timeoutMs + 2000);
    holder.stdout.setEncoding("utf8").once("data", () => {
      clearTimeout(timer);
      resolve();
    });
    holder.stderr.setEncoding("utf8").on("data", (c: string) => {
      err += c;
    });
    holder.stdin.on("error", () => {});
    holder.once("error", (e) => {
      clearTimeout(timer);
      reject(new RunError(`cannot take the lock ${path}: ${e.message}`));
    });
    holder.once("exit", (code) => {
      clearTimeout(timer);
      reject(new RunError(`cannot take the lock ${path}: flock exited ${code}: ${err.trim()}`));
    });
    holder.stdin.write("locked\n");
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
