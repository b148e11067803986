/**
 * Runs commands on this machine. No shell is involved: argv goes straight to execve.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { TransportError } from "../errors.js";
import type { CommandResult, CommandSpec, Transport } from "./transport.js";

/** How long a command gets between SIGTERM and SIGKILL after its timeout. */
const KILL_GRACE_MS = 3000;

/**
 * util-linux's setpriv makes the kernel kill our children when we die, so a `kill -9` of reclaim
 * does not leave an orphaned qemu-img still writing a temporary image.
 */
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

export function createLocalTransport(host = "localhost"): Transport {
  return {
    host,
    streamsStdin: true,
    run: (spec) => runLocal(spec),
    close: async () => {},
  };
}

function runLocal(spec: CommandSpec): Promise<CommandResult> {
  const [program, ...args] = spec.argv;
  if (program === undefined) return Promise.reject(new TransportError("empty command"));
  // Interrupted before it began: do not start it at all ("abort" has already fired).
  if (spec.signal?.aborted)
    return Promise.reject(new TransportError(`interrupted before ${program} started`));
  const argv = SETPRIV ? [SETPRIV, "--pdeathsig", "KILL", "--", program, ...args] : [program, ...args];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
      detached: false,
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const terminate = () => {
      child.kill("SIGTERM");
      killTimer = setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS);
    };
    const timer =
      spec.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            terminate();
          }, spec.timeoutMs);
    const onAbort = () => terminate();
    spec.signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      spec.onStdout?.(chunk);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
      spec.onStderr?.(chunk);
    });
    let keepalive: NodeJS.Timeout | undefined;
    child.stdin.on("error", () => {}); // a command that exits without reading its input is fine
    if (spec.holdStdinUntil && !spec.holdStdinUntil.aborted) {
      child.stdin.write(spec.stdin ?? "");
      keepalive = spec.stdinKeepaliveMs
        ? setInterval(() => child.stdin.write("\n"), spec.stdinKeepaliveMs)
        : undefined;
      keepalive?.unref();
      spec.holdStdinUntil.addEventListener(
        "abort",
        () => {
          clearInterval(keepalive);
          child.stdin.end();
        },
        { once: true },
      );
    } else child.stdin.end(spec.stdin ?? "");
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new TransportError(`cannot run ${program}: ${error.message}`, { cause: error }));
    });
    child.on("close", (code, signal) => {
      clearInterval(keepalive);
      clearTimeout(timer);
      clearTimeout(killTimer);
      spec.signal?.removeEventListener("abort", onAbort);
      // setpriv execs the program, so exit codes and signals are the program's own; a missing
      // program shows as setpriv's 127-style failure, reported like spawn's ENOENT.
      if (SETPRIV && code === 127 && /setpriv: failed to execute|No such file/.test(stderr)) {
        reject(new TransportError(`cannot run ${program}: not found`));
        return;
      }
      resolve({
        argv: spec.argv,
        exitCode: code,
        signal,
        stdout,
        stderr,
        durationMs: performance.now() - started,
        timedOut,
      });
    });
  });
}
