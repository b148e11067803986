/**
 * Reaching a guest without a network, through the QEMU guest agent: each command is a
 * `guest-exec` sent with `virsh qemu-agent-command` on the hypervisor, and its exit status and
 * output are read back with `guest-exec-status`. The argv travels as JSON inside one argument, so
 * no shell on either side ever reads it.
 *
 * The agent cannot kill what it started once the wait is given up (timeout, Ctrl-C): a `kill` of
 * the process is sent through the agent instead, which the fill's trap turns into removing its file.
 */
import { setTimeout as delay } from "node:timers/promises";
import { TransportError } from "../errors.js";
import type { CommandResult, CommandSpec, Transport } from "./transport.js";

export interface AgentTarget {
  /** The hypervisor's transport, where virsh runs. */
  hypervisor: Transport;
  uri: string;
  domain: string;
  /** First wait between two status reads; it grows to 1 s (default 50 ms). */
  pollMs?: number;
}

interface ExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
  "out-data"?: string;
  "err-data"?: string;
}

const AGENT_TIMEOUT_S = "30";

export function agentCommandArgv(uri: string, domain: string, command: object): string[] {
  return [
    "virsh",
    "-q",
    "-c",
    uri,
    "qemu-agent-command",
    "--timeout",
    AGENT_TIMEOUT_S,
    "--domain",
    domain,
    "--cmd",
    JSON.stringify(command),
  ];
}

export function createAgentTransport(target: AgentTarget): Transport {
  const { hypervisor, uri, domain } = target;
  const ask = async <T>(command: object): Promise<T> => {
    const r = await hypervisor.run({ argv: agentCommandArgv(uri, domain, command), timeoutMs: 60_000 });
    if (r.exitCode !== 0)
      throw new TransportError(
        `guest agent of ${domain}: ${(r.stderr.trim() || r.stdout.trim()).split("\n")[0] ?? `virsh exited ${r.exitCode}`}`,
      );
    try {
      return (JSON.parse(r.stdout) as { return: T }).return;
    } catch {
      throw new TransportError(`guest agent of ${domain}: unreadable answer ${r.stdout.slice(0, 120)}`);
    }
  };

  return {
    host: domain,
    async run(spec: CommandSpec): Promise<CommandResult> {
      const started = performance.now();
      const [path, ...arg] = spec.argv;
      if (!path) throw new TypeError("empty command");
      const { pid } = await ask<{ pid: number }>({
        execute: "guest-exec",
        arguments: {
          path,
          arg,
          "capture-output": true,
          ...(spec.stdin !== undefined ? { "input-data": Buffer.from(spec.stdin).toString("base64") } : {}),
        },
      });
      const deadline = spec.timeoutMs === undefined ? Number.POSITIVE_INFINITY : started + spec.timeoutMs;
      let wait = target.pollMs ?? 50;
      // Bounded by the deadline, and by count when there is none (a day of 1 s polls).
      for (let polls = 0; polls < 100_000; polls++) {
        const status = await ask<ExecStatus>({ execute: "guest-exec-status", arguments: { pid } });
        if (status.exited) {
          const stdout = decode(status["out-data"]);
          const stderr = decode(status["err-data"]);
          spec.onStdout?.(stdout);
          spec.onStderr?.(stderr);
          return {
            argv: spec.argv,
            exitCode: status.signal !== undefined ? null : (status.exitcode ?? null),
            signal: status.signal !== undefined ? `signal ${status.signal}` : null,
            stdout,
            stderr,
            durationMs: performance.now() - started,
            timedOut: false,
          };
        }
        const aborted = spec.signal?.aborted === true;
        if (aborted || performance.now() >= deadline) {
          await ask({
            execute: "guest-exec",
            arguments: { path: "kill", arg: ["-TERM", String(pid)] },
          }).catch(() => undefined);
          return {
            argv: spec.argv,
            exitCode: null,
            signal: "SIGTERM",
            stdout: "",
            stderr: aborted ? "interrupted" : "timed out",
            durationMs: performance.now() - started,
            timedOut: !aborted,
          };
        }
        await delay(Math.min(wait, Math.max(0, deadline - performance.now())));
        wait = Math.min(1000, wait * 2);
      }
      throw new TransportError(`guest agent of ${domain}: gave up waiting for process ${pid}`);
    },
    async close() {},
  };
}

function decode(base64: string | undefined): string {
  return base64 ? Buffer.from(base64, "base64").toString("utf8") : "";
}
