/**
 * The real OpenSSH client against the lab: strict host-key checking against a generated
 * known_hosts, no user or system config, batch mode, and a bounded run time.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { TEST_USER } from "./sshd.js";

export interface SshRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface ClientOptions {
  identityFile: string;
  knownHostsFile: string;
  /** Extra `-o` settings, e.g. `ConnectTimeout=5`. */
  options?: readonly string[];
}

/** `-F /dev/null` plus strict checking: the arguments before `-p PORT user@host command`. */
export function sshArgs(c: ClientOptions): string[] {
  return [
    "-F",
    "/dev/null",
    "-o",
    `UserKnownHostsFile=${c.knownHostsFile}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "UpdateHostKeys=no",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=ERROR",
    "-i",
    c.identityFile,
    ...(c.options ?? []).flatMap((o) => ["-o", o]),
  ];
}

export interface ClientConfigHost {
  alias: string;
  hostName: string;
  port: number;
  proxyJump?: string;
}

/**
 * An ssh_config for `ssh -F`: needed for jump hosts, because options given with `-o`/`-i` on the
 * command line are not passed to the ssh that ProxyJump starts for the jump host, but `-F` is.
 */
export function writeClientConfig(
  path: string,
  c: ClientOptions & { hosts: readonly ClientConfigHost[]; user?: string },
): string {
  const lines: string[] = [];
  for (const h of c.hosts) {
    lines.push(`Host ${h.alias}`, `  HostName ${h.hostName}`, `  Port ${h.port}`);
    if (h.proxyJump) lines.push(`  ProxyJump ${h.proxyJump}`);
  }
  lines.push(
    "Host *",
    `  User ${c.user ?? TEST_USER}`,
    `  IdentityFile ${c.identityFile}`,
    "  IdentitiesOnly yes",
    `  UserKnownHostsFile ${c.knownHostsFile}`,
    "  GlobalKnownHostsFile /dev/null",
    "  StrictHostKeyChecking yes",
    "  UpdateHostKeys no",
    "  BatchMode yes",
    "  ConnectTimeout 10",
    "  LogLevel ERROR",
    ...(c.options ?? []).map((o) => `  ${o.replace("=", " ")}`),
    "",
  );
  writeFileSync(path, lines.join("\n"));
  return path;
}

/** Runs `ssh ARGS`, killing it after `timeoutMs` (default 15 s). */
export function runSsh(args: readonly string[], timeoutMs = 15_000): Promise<SshRun> {
  return startSsh(args, timeoutMs).done;
}

/** Starts `ssh ARGS` without waiting (for long-running sessions); `done` resolves when it exits. */
export function startSsh(
  args: readonly string[],
  timeoutMs = 30_000,
): { pid: number | undefined; done: Promise<SshRun> } {
  const started = performance.now();
  const child = spawn("ssh", args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  child.once("error", (e) => {
    stderr += `spawn error: ${e.message}\n`;
  });
  const done = new Promise<SshRun>((resolve) => {
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
  return { pid: child.pid, done };
}

/** A raw TCP connect: resolves with "connected" or the error code, and the time it took. */
export function tcpProbe(
  host: string,
  port: number,
  timeoutMs = 5000,
): Promise<{ result: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ result, ms: performance.now() - started });
    };
    const timer = setTimeout(() => done("timeout"), timeoutMs);
    socket.once("connect", () => done("connected"));
    socket.once("error", (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}
