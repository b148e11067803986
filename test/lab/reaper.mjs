/**
 * The lab's dead-man switch: one per test process, started detached by reaper-client.ts. It reads
 * JSON lines on stdin ({op:"add", id, r} / {op:"del", id}); when stdin closes while entries are
 * still registered (the test process ended without cleaning up, however it died), it SIGKILLs
 * each registered process tree, deletes the registered namespaces and directories, and exits.
 * Plain JavaScript so Node runs it without a TypeScript loader.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => {});

const IP = existsSync("/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip";
const entries = new Map();

function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { pid, state: f[0], ppid: Number(f[1]), start: Number(f[19]) };
  } catch {
    return undefined;
  }
}

function tree(pid) {
  const byParent = new Map();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const p = stat(Number(name));
    if (!p || p.state === "Z") continue;
    if (!byParent.has(p.ppid)) byParent.set(p.ppid, []);
    byParent.get(p.ppid).push(p);
  }
  const out = [];
  const queue = [pid];
  for (let i = 0; i < queue.length && i < 10000; i++) {
    for (const c of byParent.get(queue[i]) ?? []) {
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

function kill(p, sig) {
  const now = stat(p.pid);
  if (!now || now.start !== p.start || now.state === "Z") return;
  try {
    process.kill(p.pid, sig);
  } catch {}
}

function quiet(file, args) {
  try {
    execFileSync(file, args, { stdio: "ignore", timeout: 20000 });
  } catch {}
}

function reap(r) {
  if (r.kind === "process") {
    const root = { pid: r.pid, start: r.start };
    kill(root, "SIGSTOP");
    const all = [root, ...tree(r.pid)];
    for (const p of all) kill(p, "SIGKILL");
    if (r.dir) rmSync(r.dir, { recursive: true, force: true });
  } else if (r.kind === "netns") {
    for (const ns of [r.jumpNs, r.innerNs]) {
      let pids = "";
      try {
        pids = execFileSync(IP, ["netns", "pids", ns], { encoding: "utf8", timeout: 20000 });
      } catch {}
      for (const pid of pids.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {}
      }
    }
    const script = [
      `"$0" link del "$1" 2>/dev/null`,
      `"$0" netns del "$2" 2>/dev/null`,
      `"$0" netns del "$3" 2>/dev/null`,
      `"$0" -o link show | grep -q ': rcl-[a-z0-9]*-rj[@:]' || "$0" route del unreachable 10.213.0.0/16 2>/dev/null`,
      "true",
    ].join("; ");
    quiet("flock", [
      "-w",
      "20",
      "/run/reclaim-lab.lock",
      "sh",
      "-c",
      script,
      IP,
      r.rootLink,
      r.innerNs,
      r.jumpNs,
    ]);
  } else if (r.kind === "dir") {
    rmSync(r.path, { recursive: true, force: true });
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  try {
    const m = JSON.parse(line);
    if (m.op === "add") entries.set(m.id, m.r);
    else if (m.op === "del") entries.delete(m.id);
  } catch {}
});
lines.on("close", () => {
  for (const r of [...entries.values()].reverse()) {
    try {
      reap(r);
    } catch {}
  }
  process.exit(0);
});
