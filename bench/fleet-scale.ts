/**
 * bench/fleet-scale: how `reclaim plan` (facts + plan, nothing to do) grows with the fleet: wall
 * time, reclaim's CPU time and peak memory, TCP connections and SSH sessions per host at several
 * fleet sizes, and CPU profiles to say where the time goes.
 *
 *   npx tsx bench/fleet-scale.ts [--hosts 20,100,500] [--disks 3] [--runs 1] [--forks hosts,50]
 *                                [--profile 100] [--main dist/cli/main.js[,/other/dist/cli/main.js]]
 *
 * Hosts are real sshd processes on loopback addresses (127.0.0.2–251, then 127.0.1.2…), started
 * once for the largest size; each size plans the first N of them, logged into as `reclaim-test`
 * (as bench/fleet-noop.ts does), with a known_hosts file of those N hosts. One reclaim process a
 * run; each size is run at every --forks (`hosts`: all connections at once), by every build given
 * to --main (another build, e.g. a patched copy of dist/, side by side with this one). Peak RSS
 * and CPU time (user + system) are the reclaim process's, from GNU time; connections and sessions
 * are counted in each sshd's log (LogLevel VERBOSE: "Connection from", "Accepted publickey",
 * "Starting session:"). --profile takes fleet sizes to run once more under `node --cpu-prof` (the
 * first build, the first --forks); 0 for none. Prints markdown tables; writes
 * bench/results/fleet-scale.json and the profiles beside it.
 */
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  giveToTestUser,
  type KeyPair,
  Lab,
  type SshdHost,
  TEST_USER,
  writeKnownHosts,
} from "../test/lab/sshd.js";
import { type ProfileSummary, summarizeCpuProfile } from "./fleet-scale-profile.js";

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "20,100,500" },
    disks: { type: "string", default: "3" },
    runs: { type: "string", default: "1" },
    forks: { type: "string", default: "hosts,50" },
    profile: { type: "string", default: "100" },
    main: { type: "string", default: "dist/cli/main.js" },
  },
});
const numbers = (list: string) => list.split(",").filter(Boolean).map(Number);
const SIZES = numbers(values.hosts).sort((a, b) => a - b);
const DISKS = Number(values.disks);
const RUNS = Number(values.runs);
/** Each a number, or "hosts": as many as the fleet has (all connections at once). */
const FORKS = values.forks.split(",").map((f) => (f === "hosts" ? "hosts" : Number(f)));
const PROFILE_SIZES = numbers(values.profile).filter((n) => n > 0);
const ROOT = new URL("..", import.meta.url).pathname;
/** reclaim builds to compare (`--main a.js,b.js`, relative to the project); the project's own by default. */
const BUILDS = values.main.split(",").map((m) => (m.startsWith("/") ? m : join(ROOT, m)));
const MAIN = BUILDS[0] as string;
const GNU_TIME = "/usr/bin/time";
/** sshd starts at once: each makes an RSA host key first (CPU-bound, seconds on a busy machine). */
const START_PARALLEL = cpus().length;
/** Loopback addresses a /24 gives, leaving .0, .1 and the top few alone. */
const PER_SUBNET = 250;

type Forks = number | "hosts";

interface Run {
  wallS: number;
  peakRssKiB: number;
  /** reclaim's own CPU time, user + system. */
  cpuS: number;
  /** Hosts the plan calls unreachable (a handshake that timed out, say). */
  unreachable: number;
  /** One of the reasons given, when any. */
  unreachableExample?: string;
}

interface Counts {
  tcp: number;
  accepted: number;
  sessions: number;
}

interface SizeResult {
  /** The reclaim build (its main.js) when more than one is compared. */
  build?: string;
  hosts: number;
  forks: Forks;
  runs: Run[];
  wallS: number;
  cpuS: number;
  peakRssMiB: number;
  unreachable: number;
  /** TCP connections the hosts accepted, a run. */
  connections: number;
  /** Of those, how many logged in ("Accepted publickey"), a run. */
  logins: number;
  /** SSH sessions (exec channels) a run, per host that ran any. */
  sessionsPerHost: { min: number; max: number; mean: number };
  /** Hosts that ran no session (the unreachable ones, when all is well). */
  hostsWithoutSessions: number;
}

interface ProfileResult {
  hosts: number;
  forks: Forks;
  wallS: number;
  unreachable: number;
  file: string;
  summary: ProfileSummary;
}

const LARGEST = SIZES.at(-1) ?? 0;
if (!SIZES.every((n) => Number.isInteger(n) && n > 0)) throw new Error(`--hosts: ${values.hosts}`);
if (!FORKS.every((f) => f === "hosts" || (Number.isInteger(f) && f > 0)))
  throw new Error(`--forks: ${values.forks}`);
if (!existsSync(GNU_TIME))
  throw new Error(`${GNU_TIME} is missing (apt-get install time): it measures peak RSS`);
const limits = systemLimits(LARGEST);

const lab = new Lab();
try {
  console.error("building (npm run -s build)");
  execFileSync("npm", ["run", "-s", "build"], { cwd: ROOT, stdio: "inherit" });
  lab.user();
  const dir = lab.tempDir("reclaim-bench-scale-");
  giveToTestUser(dir);
  const key = lab.key("id_bench");
  const hosts = await startHosts(lab, LARGEST, key);
  const disks = makeDisks(dir, LARGEST, DISKS);
  console.error(
    `${LARGEST} sshd hosts up (${hosts[0]?.address} … ${hosts.at(-1)?.address}), ${LARGEST * DISKS} images`,
  );

  const fleet: Fleet = { dir, key, hosts, disks };
  const results: SizeResult[] = [];
  for (const build of BUILDS)
    for (const forks of FORKS) for (const n of SIZES) results.push(await measureSize(fleet, build, forks, n));

  const profiles: ProfileResult[] = [];
  for (const n of PROFILE_SIZES.filter((p) => p <= LARGEST)) profiles.push(await profileSize(fleet, n));

  report(results, profiles);
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(
    join(ROOT, "bench/results/fleet-scale.json"),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        ...sourceState(),
        machine: { cpus: cpus().length, memGiB: totalmem() / 1024 ** 3, node: process.version },
        loadAverageAtEnd: loadavg(),
        disks: DISKS,
        runs: RUNS,
        limits,
        sizes: results.map((r) => ({
          ...r,
          sPerHost: r.wallS / r.hosts,
          cpuMsPerHost: (r.cpuS * 1000) / r.hosts,
          mibPerHost: r.peakRssMiB / r.hosts,
        })),
        fits: series(results).map((rs) => ({
          ...(rs[0]?.build ? { build: rs[0].build } : {}),
          forks: rs[0]?.forks,
          ...fits(rs),
        })),
        profiles,
      },
      null,
      2,
    )}\n`,
  );
} finally {
  await lab.close();
}

interface Fleet {
  dir: string;
  key: KeyPair;
  hosts: SshdHost[];
  /** Each host's image paths. */
  disks: string[][];
}

/** RUNS runs of one build on the first `n` hosts, and what the hosts' logs say they saw. */
async function measureSize(fleet: Fleet, build: string, forks: Forks, n: number): Promise<SizeResult> {
  const hosts = fleet.hosts.slice(0, n);
  const files = writeRunFiles(fleet, n);
  const runs: Run[] = [];
  const before = await settledCounts(hosts);
  for (let i = 0; i < RUNS; i++) {
    const run = await measuredPlan(build, files, forksOf(forks, n));
    runs.push(run);
    console.error(
      `${BUILDS.length > 1 ? `${labelOf(build)}: ` : ""}${n} hosts, forks ${forksOf(forks, n)}, run ${i + 1}: ${run.wallS.toFixed(2)} s, CPU ${run.cpuS.toFixed(2)} s, ${(run.peakRssKiB / 1024).toFixed(0)} MiB${run.unreachable ? `, ${run.unreachable} unreachable (${run.unreachableExample})` : ""}`,
    );
  }
  const after = await settledCounts(hosts);
  const delta = after.map((a, h) => ({
    tcp: a.tcp - (before[h]?.tcp ?? 0),
    accepted: a.accepted - (before[h]?.accepted ?? 0),
    sessions: a.sessions - (before[h]?.sessions ?? 0),
  }));
  const perHostSessions = delta.filter((d) => d.sessions > 0).map((d) => d.sessions / RUNS);
  return {
    ...(BUILDS.length > 1 ? { build: labelOf(build) } : {}),
    hosts: n,
    forks,
    runs,
    wallS: median(runs.map((r) => r.wallS)),
    cpuS: median(runs.map((r) => r.cpuS)),
    peakRssMiB: median(runs.map((r) => r.peakRssKiB)) / 1024,
    unreachable: Math.max(...runs.map((r) => r.unreachable)),
    connections: sum(delta.map((d) => d.tcp)) / RUNS,
    logins: sum(delta.map((d) => d.accepted)) / RUNS,
    sessionsPerHost: {
      min: Math.min(...perHostSessions),
      max: Math.max(...perHostSessions),
      mean: sum(perHostSessions) / Math.max(1, perHostSessions.length),
    },
    hostsWithoutSessions: n - perHostSessions.length,
  };
}

/** One more run of the first build on `n` hosts under `node --cpu-prof`, summarised; the profile is kept. */
async function profileSize(fleet: Fleet, n: number): Promise<ProfileResult> {
  const forks = FORKS[0] ?? "hosts";
  const profileDir = join(fleet.dir, `cpuprof-${n}`);
  mkdirSync(profileDir);
  const files = writeRunFiles(fleet, n);
  const started = performance.now();
  const out = await runReclaim(
    "node",
    ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, MAIN, ...planArgs(files, forksOf(forks, n))],
    files,
  );
  const wallS = (performance.now() - started) / 1000;
  const written = readdirSync(profileDir).filter((f) => f.endsWith(".cpuprofile"));
  if (written.length !== 1)
    throw new Error(`expected one .cpuprofile in ${profileDir}, found ${written.length}`);
  const file = join(profileDir, written[0] as string);
  const kept = `bench/results/fleet-scale-${n}.cpuprofile`;
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  copyFileSync(file, join(ROOT, kept));
  return {
    hosts: n,
    forks,
    wallS,
    unreachable: unreachableOf(out).count,
    file: kept,
    // The build's project root: its dist/ is what counts as reclaim's code.
    summary: summarizeCpuProfile(file, MAIN.slice(0, MAIN.lastIndexOf("dist/"))),
  };
}

/** Which source the measured build came from: the commit, and whether src/ differed from it. */
function sourceState(): { commit: string; srcModified: boolean } {
  const git = (...args: string[]) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim();
  return { commit: git("rev-parse", "HEAD"), srcModified: git("status", "--porcelain", "src") !== "" };
}

function forksOf(forks: Forks, hosts: number): number {
  return forks === "hosts" ? hosts : forks;
}

/** A build's name in the tables: this project's path, or the folder that holds another's dist/. */
function labelOf(build: string): string {
  if (build.startsWith(ROOT)) return build.slice(ROOT.length);
  const root = build.slice(0, build.lastIndexOf("/dist/"));
  return root.slice(root.lastIndexOf("/") + 1) || build;
}

/** The results of one build at one forks setting, by fleet size: what a fit or a marginal cost compares. */
function series(results: readonly SizeResult[]): SizeResult[][] {
  const out = new Map<string, SizeResult[]>();
  for (const r of results) {
    const key = `${r.build ?? ""}\0${r.forks}`;
    out.set(key, [...(out.get(key) ?? []), r]);
  }
  return [...out.values()];
}

/**
 * The limits a fleet of `n` sshd processes on one machine runs into, checked before starting:
 * open files (the bench holds two pipes a host, reclaim one socket a host; Node raises its soft
 * limit to the hard one at start-up), processes, and loopback addresses (all of 127/8 is local on
 * Linux, so addresses past 127.0.0.255 need no configuration). Each sshd listens on its own free
 * port and takes one connection, so MaxStartups (100:30:200) is never reached.
 */
function systemLimits(n: number): Record<string, number> {
  const limitsText = readFileSync("/proc/self/limits", "utf8");
  const soft = (name: string) =>
    Number(new RegExp(`^${name}\\s+(\\d+|unlimited)`, "m").exec(limitsText)?.[1] ?? "0");
  const openFiles = soft("Max open files");
  const processes = soft("Max processes") || Number.POSITIVE_INFINITY;
  const pidMax = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8"));
  // A rough bound per host during a run: the listener, two per-connection sshd, the batch's sh with
  // its helpers, and a subshell and a command for each of its reads (a few a disk).
  const processesNeeded = n * (1 + 2 + 4 + 3 * 2 * DISKS);
  if (openFiles < 2 * n + 256)
    throw new Error(`open files limit ${openFiles} < ${2 * n + 256}: raise ulimit -n`);
  if (Math.min(processes, pidMax) < processesNeeded + 1000)
    throw new Error(
      `process limit ${Math.min(processes, pidMax)} (ulimit -u, kernel.pid_max) too low for ${processesNeeded}`,
    );
  if (n > PER_SUBNET * 255) throw new Error(`${n} hosts do not fit in 127.0.0.0/8 at ${PER_SUBNET} a /24`);
  return { openFiles, processes, pidMax, processesNeeded };
}

function addressOf(i: number): string {
  return `127.0.${Math.floor(i / PER_SUBNET)}.${2 + (i % PER_SUBNET)}`;
}

/** `n` sshd hosts, START_PARALLEL at a time; the Lab stops them all. */
async function startHosts(lab: Lab, n: number, key: KeyPair): Promise<SshdHost[]> {
  const hosts: SshdHost[] = [];
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < n && !failed) {
      const i = next++;
      for (let attempt = 1; !hosts[i]; attempt++) {
        try {
          hosts[i] = await lab.sshd({
            address: addressOf(i),
            authorizedKeys: [key.publicKey],
            maxSessions: 10,
            readyTimeoutMs: 60_000,
          });
        } catch (error) {
          // The lab gives ssh-keygen 20 s for a host key; an RSA key on a busy machine can take longer.
          if (attempt < 3) continue;
          failed = true;
          throw error;
        }
      }
      if ((i + 1) % 100 === 0) console.error(`  ${i + 1} sshd started`);
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: START_PARALLEL }, worker));
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (rejected) throw rejected.reason;
  return hosts;
}

/** `perHost` small healthy qcow2 images a host, copies of one (nothing to reclaim). */
function makeDisks(dir: string, hosts: number, perHost: number): string[][] {
  const template = join(dir, "template.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", template, "64M"]);
  return Array.from({ length: hosts }, (_, h) => {
    const hostDir = join(dir, `kvm${h}`);
    mkdirSync(hostDir);
    giveToTestUser(hostDir);
    return Array.from({ length: perHost }, (_, d) => {
      const path = join(hostDir, `vm${d}.qcow2`);
      copyFileSync(template, path);
      giveToTestUser(path);
      return path;
    });
  });
}

interface RunFiles {
  inventory: string;
  playbook: string;
  knownHosts: string;
  sshConfig: string;
  /** XDG_STATE_HOME for reclaim's audit log. */
  stateDir: string;
}

/** Inventory, playbook (one guest a host) and known_hosts of the first `n` hosts only. */
function writeRunFiles({ dir, key, hosts: all, disks: allDisks }: Fleet, n: number): RunFiles {
  const hosts = all.slice(0, n);
  const disks = allDisks.slice(0, n);
  const inventory = join(dir, `inventory-${n}.yml`);
  writeFileSync(
    inventory,
    `all:\n  vars:\n    ansible_user: ${TEST_USER}\n    ansible_ssh_private_key_file: ${key.privateKey}\n  children:\n    fleet:\n      hosts:\n${hosts
      .map(
        (h, i) =>
          `        kvm${i}:\n          ansible_host: ${h.address}\n          ansible_port: ${h.port}\n`,
      )
      .join("")}`,
  );
  const playbook = join(dir, `reclaim-${n}.yml`);
  writeFileSync(
    playbook,
    `- name: fleet scale\n  hosts: fleet\n  policy: { min_reclaimable: 1TiB, zero: none }\n  guests:\n${disks
      .map((list, i) => `    - name: vm${i}\n      host: kvm${i}\n      disks: [${list.join(", ")}]\n`)
      .join("")}`,
  );
  const knownHosts = writeKnownHosts(join(dir, `known_hosts-${n}`), hosts);
  const sshConfig = join(dir, "ssh_config");
  writeFileSync(sshConfig, "");
  return { inventory, playbook, knownHosts, sshConfig, stateDir: join(dir, "state") };
}

function planArgs(files: RunFiles, forks: number): string[] {
  return [
    "plan",
    "-i",
    files.inventory,
    files.playbook,
    "--known-hosts",
    files.knownHosts,
    "--ssh-config",
    files.sshConfig,
    "-f",
    String(forks),
  ];
}

/**
 * One `reclaim plan` under GNU time: wall time as seen from here; peak RSS and CPU time (user +
 * system) as the kernel counted them for the reclaim process.
 */
async function measuredPlan(main: string, files: RunFiles, forks: number): Promise<Run> {
  const timeFile = join(files.stateDir, "time.out");
  const started = performance.now();
  const out = await runReclaim(
    GNU_TIME,
    ["-f", "%M %U %S", "-o", timeFile, "node", main, ...planArgs(files, forks)],
    files,
  );
  const wallS = (performance.now() - started) / 1000;
  const [rss, user, system] = (readFileSync(timeFile, "utf8").trim().split("\n").at(-1) ?? "")
    .split(" ")
    .map(Number);
  const { count, example } = unreachableOf(out);
  return {
    wallS,
    peakRssKiB: rss ?? Number.NaN,
    cpuS: (user ?? Number.NaN) + (system ?? Number.NaN),
    unreachable: count,
    ...(example ? { unreachableExample: example } : {}),
  };
}

/**
 * Runs reclaim without blocking this process (the sshd logs keep flowing in) and returns its
 * output. Exit 0, or 3 (a host unreachable: counted, not fatal); anything else throws.
 */
function runReclaim(command: string, args: string[], files: RunFiles): Promise<string> {
  mkdirSync(files.stateDir, { recursive: true });
  return new Promise((resolve, reject) => {
    // The audit log (reclaim writes one every run) goes to the bench's temp dir, not to ~/.local/state.
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, XDG_STATE_HOME: files.stateDir },
    });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.once("error", reject);
    child.once("close", (code) => {
      const out = Buffer.concat(chunks).toString("utf8");
      if (code === 0 || code === 3) resolve(out);
      else reject(new Error(`${command} ${args.join(" ")} exited ${code}:\n${out.slice(-4000)}`));
    });
  });
}

/** The hosts the printed plan marks UNREACHABLE, and the first reason. */
function unreachableOf(out: string): { count: number; example?: string } {
  const reasons = [...out.matchAll(/ {2}UNREACHABLE: (.*)/g)].map((m) => m[1] ?? "");
  // The address and port differ from host to host; the reason after them is what tells.
  const example = reasons[0]?.replace(/^\S+: /, "");
  return { count: reasons.length, ...(example ? { example } : {}) };
}

function countOf(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/**
 * Each host's log counts, once the logs have stopped growing for a second (they arrive through
 * pipes, slowly when the machine is busy).
 */
async function settledCounts(hosts: readonly SshdHost[]): Promise<Counts[]> {
  const read = () =>
    hosts.map((h) => {
      const log = h.logs();
      return {
        tcp: countOf(log, "Connection from "),
        accepted: countOf(log, "Accepted publickey for "),
        sessions: countOf(log, "Starting session: "),
      };
    });
  let last = JSON.stringify(read());
  for (let i = 0, still = 0; i < 120 && still < 4; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = JSON.stringify(read());
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return JSON.parse(last) as Counts[];
}

function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** Least squares `fixed + perHost × hosts` for wall time and peak RSS. */
function fits(results: readonly SizeResult[]) {
  const line = (ys: number[]) => {
    const xs = results.map((r) => r.hosts);
    const mx = sum(xs) / xs.length;
    const my = sum(ys) / ys.length;
    const sxx = sum(xs.map((x) => (x - mx) ** 2));
    const slope = sxx === 0 ? Number.NaN : sum(xs.map((x, i) => (x - mx) * ((ys[i] ?? 0) - my))) / sxx;
    return { fixed: my - slope * mx, perHost: slope };
  };
  return {
    wallS: line(results.map((r) => r.wallS)),
    cpuS: line(results.map((r) => r.cpuS)),
    peakRssMiB: line(results.map((r) => r.peakRssMiB)),
  };
}

function report(results: readonly SizeResult[], profiles: readonly ProfileResult[]): void {
  const runsNote = RUNS > 1 ? `, median of ${RUNS} runs` : "";
  console.log(`## reclaim plan: ${DISKS} disks a host, one reclaim process${runsNote}\n`);
  const compared = BUILDS.length > 1;
  console.log(
    `| ${compared ? "build | " : ""}hosts | forks | wall time | s/host | Δ s/host | CPU | CPU ms/host | peak RSS | MiB/host | Δ MiB/host | connections (logins) | sessions/host | unreachable |`,
  );
  console.log(`|${compared ? " --- |" : ""}${" ---: |".repeat(13)}`);
  for (const rs of series(results)) {
    rs.forEach((r, i) => {
      // Marginal cost: from the next smaller fleet.
      const prev = rs[i - 1];
      const marginal = (pick: (x: SizeResult) => number, digits: number) =>
        prev ? ((pick(r) - pick(prev)) / (r.hosts - prev.hosts)).toFixed(digits) : "–";
      const s = r.sessionsPerHost;
      const sessions = s.min === s.max ? `${s.min}` : `${s.min}–${s.max}`;
      console.log(
        `| ${compared ? `${r.build} | ` : ""}${r.hosts} | ${r.forks} | ${r.wallS.toFixed(2)} s | ${(r.wallS / r.hosts).toFixed(3)} | ${marginal((x) => x.wallS, 3)} | ${r.cpuS.toFixed(2)} s | ${((r.cpuS * 1000) / r.hosts).toFixed(1)} | ${r.peakRssMiB.toFixed(0)} MiB | ${(r.peakRssMiB / r.hosts).toFixed(2)} | ${marginal((x) => x.peakRssMiB, 3)} | ${r.connections} (${r.logins}) | ${sessions} | ${r.unreachable} |`,
      );
    });
  }
  console.log("");
  for (const rs of series(results)) {
    const fit = fits(rs);
    console.log(
      `Fit, ${compared ? `${rs[0]?.build}, ` : ""}forks ${rs[0]?.forks}: wall ≈ ${fit.wallS.fixed.toFixed(2)} s + ${(fit.wallS.perHost * 1000).toFixed(1)} ms × hosts; CPU ≈ ${fit.cpuS.fixed.toFixed(2)} s + ${(fit.cpuS.perHost * 1000).toFixed(1)} ms × hosts; peak RSS ≈ ${fit.peakRssMiB.fixed.toFixed(0)} MiB + ${fit.peakRssMiB.perHost.toFixed(3)} MiB × hosts`,
    );
  }
  for (const { hosts, forks, wallS, unreachable, summary } of profiles) {
    const measured = results.find((r) => r.hosts === hosts && r.forks === forks);
    const row = (e: { name: string; category: string; ms: number; share: number }) =>
      `| ${e.name.replaceAll("|", "\\|")} | ${e.category} | ${e.ms.toFixed(0)} | ${(e.share * 100).toFixed(1)} % |`;
    console.log(
      `\n## CPU profile, ${hosts} hosts, forks ${forks} (${wallS.toFixed(2)} s with --cpu-prof, ${summary.totalMs.toFixed(0)} ms sampled${unreachable ? `, ${unreachable} unreachable` : ""})\n\nSamples are wall-clock: on a machine the fleet saturates, reclaim's thread waits for a core inside whatever it was doing (mostly socket writes, which wake sshd); its CPU time in the measured run was ${measured ? `${measured.cpuS.toFixed(2)} s` : "not measured"}. Read the shares, not the milliseconds.\n`,
    );
    console.log("| by package | | self ms | share |\n| --- | --- | ---: | ---: |");
    for (const e of summary.categories) console.log(row(e));
    console.log("\n| top self time | package | ms | share |\n| --- | --- | ---: | ---: |");
    for (const e of summary.self) console.log(row(e));
    console.log("\n| reclaim function (inclusive) | | ms | share |\n| --- | --- | ---: | ---: |");
    for (const e of summary.reclaimInclusive) console.log(row(e));
  }
}
