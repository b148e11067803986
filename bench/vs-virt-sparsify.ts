/**
 * bench/vs-virt-sparsify: giving back a running guest's deleted data, by reclaim and by Debian's
 * virt-sparsify, side by side in one run on fresh copies of the same guest image.
 *
 *   npx tsx bench/vs-virt-sparsify.ts [--size-gib 4] [--deleted 0.6] [--runs 1] [--dir /var/tmp]
 *
 * The image: a qcow2 data disk of SIZE GiB holding ext4, DELETED of it written with random data
 * and deleted again (still allocated in the image), 10% kept, plus a file whose sha256 is checked
 * inside the guest after every tool. Each tool starts from a fresh `cp --sparse=always` of it,
 * attached to a real guest booted under QEMU (TCG, the guest lab of `reclaim demo --vm`), and
 * ends with the guest running again:
 * - reclaim, discard reaching the image (`discard=unmap`): `reclaim apply` trims inside the
 *   running guest; no downtime.
 * - reclaim, discard not reaching it (`discard=ignore`): `reclaim apply` zero-fills inside the
 *   guest, powers it off, rewrites the image with `qemu-img convert` (verified), starts it again.
 * - virt-sparsify (copying mode, then the copy renamed over the image) and `virt-sparsify
 *   --in-place`: they need the guest shut off, so the bench powers it off as reclaim does, runs
 *   the tool, and starts the guest again.
 * Wall time: from the running guest to the guest started again with the space given back (for
 * reclaim the whole `apply`). Downtime: from the power-off request to the guest's QEMU started
 * again (the guest's own boot afterwards, the same for all, is reported apart). Allocation:
 * st_blocks × 512 of the image right after the tool. Every timing starts from a cold page cache.
 * Prints a markdown table with the ratios against `virt-sparsify --in-place`; writes
 * bench/results/vs-virt-sparsify.json.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureGuestArtifacts, type GuestArtifacts } from "../src/demo/guest-artifacts.js";
import { makeDataImage } from "../test/lab/guest/data-image.js";
import {
  type BenchGuest,
  bootGuest,
  endGuest,
  makeKey,
  powerOff,
  restart,
  sha256In,
} from "./vs-virt-sparsify-guest.js";
import { ensureAppliance, ensureHostPackages, LIBGUESTFS_ENV } from "./vs-virt-sparsify-setup.js";

const { values } = parseArgs({
  options: {
    "size-gib": { type: "string", default: "4" },
    deleted: { type: "string", default: "0.6" },
    runs: { type: "string", default: "1" },
    dir: { type: "string", default: "/var/tmp" },
  },
});
const SIZE_GIB = Number(values["size-gib"]);
const DELETED = Number(values.deleted);
const RUNS = Number(values.runs);
/** Share of the disk still in use by files (besides the checked survivor). */
const KEPT = 0.1;
const ROOT = new URL("..", import.meta.url).pathname;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const STEP_TIMEOUT_MS = 30 * 60_000;

const SIZE_MiB = Math.round(SIZE_GIB * 1024);
const DELETED_MiB = Math.round(DELETED * SIZE_MiB);
const KEPT_MiB = Math.round(KEPT * SIZE_MiB);
if (!(SIZE_GIB > 0) || !(DELETED >= 0) || !Number.isInteger(RUNS) || RUNS < 1) {
  console.error("usage: npx tsx bench/vs-virt-sparsify.ts [--size-gib 4] [--deleted 0.6] [--runs 1]");
  process.exit(2);
}
// makeDataImage leaves ext4 ~15% of the disk plus 16 MiB.
if (DELETED_MiB + KEPT_MiB + 4 > SIZE_MiB * 0.85 - 16) {
  console.error(`--deleted ${DELETED} with ${KEPT * 100}% kept does not fit in ${SIZE_GIB} GiB of ext4`);
  process.exit(2);
}

type ToolId = "reclaim-trim" | "reclaim-fill" | "virt-sparsify" | "virt-sparsify-in-place";
const TOOLS: { id: ToolId; label: string; discard: "unmap" | "ignore" }[] = [
  { id: "reclaim-trim", label: "reclaim apply, discard=unmap (trim, guest running)", discard: "unmap" },
  { id: "reclaim-fill", label: "reclaim apply, discard=ignore (fill, off, convert, on)", discard: "ignore" },
  { id: "virt-sparsify", label: "virt-sparsify (copying mode), guest off", discard: "ignore" },
  { id: "virt-sparsify-in-place", label: "virt-sparsify --in-place, guest off", discard: "ignore" },
];
const BASELINE: ToolId = "virt-sparsify-in-place";

interface Measure {
  wallMs: number;
  downtimeMs: number;
  /** The tool's own run (virt-sparsify; reclaim's rewrite step), ms. */
  toolMs: number;
  /** reclaim's step inside the running guest (trim or zero-fill), ms. */
  guestSideMs: number;
  allocatedBefore: number;
  allocatedAfter: number;
  apparentAfter: number;
  /** From the restart until the guest answered over SSH again, ms (0 where it kept running). */
  bootAfterMs: number;
  survivorIntact: boolean;
  cold: boolean;
  /** The machine's 1-minute load average before and after the tool: others' work skews timings. */
  load: [number, number];
}

const say = (line: string) => console.error(line);
const allocated = (path: string) => statSync(path).blocks * 512;
const fmtS = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const fmtMiB = (b: number) => `${(b / MiB).toFixed(0)} MiB`;

/** Drops the page cache so that every tool reads the image from disk; false where refused. */
function dropCaches(): boolean {
  spawnSync("sync");
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

/** Runs a command to its end (bounded), its output to `log`; throws with the output's tail on failure. */
function run(argv: string[], o: { env?: NodeJS.ProcessEnv; log: string; ok?: (code: number) => boolean }) {
  const t0 = performance.now();
  const r = spawnSync(argv[0] ?? "", argv.slice(1), {
    env: { ...process.env, ...o.env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: STEP_TIMEOUT_MS,
    maxBuffer: 256 << 20,
  });
  const ms = performance.now() - t0;
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  writeFileSync(o.log, `$ ${argv.join(" ")}\n${out}\n(exit ${r.status ?? r.signal}, ${fmtS(ms)})\n`);
  if (!(o.ok ?? ((c) => c === 0))(r.status ?? -1)) {
    throw new Error(
      `${argv.slice(0, 3).join(" ")} … exited ${r.status ?? r.signal}:\n${out.trimEnd().split("\n").slice(-20).join("\n")}`,
    );
  }
  return { ms, stdout: r.stdout ?? "" };
}

/** Inventory (this machine), playbook (the one guest on its forwarded port), ssh config: apply's argv. */
function reclaimArgv(dir: string, g: BenchGuest, mode: "trim" | "fill", tag: string): string[] {
  const inventory = join(dir, "inventory.yml");
  writeFileSync(inventory, "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n");
  const playbook = join(dir, `${tag}.yml`);
  const lines = [
    "- name: bench",
    "  hosts: localhost",
    `  policy: { min_reclaimable: 16MiB, zero: ${mode}, shutdown: ${mode === "trim" ? "never" : "graceful"}, shutdown_timeout: 120s }`,
    "  vm:",
    "    manager: guest",
    ...(mode === "fill" ? ["    start_command:", ...g.argv.map((a) => `      - ${JSON.stringify(a)}`)] : []),
    "  guests:",
    `    - name: ${g.name}`,
    `      disks: [${JSON.stringify(g.image)}]`,
    `      ssh: { host: 127.0.0.1, port: ${g.port}, user: root, jump: none }`,
    "",
  ];
  writeFileSync(playbook, lines.join("\n"));
  const sshConfig = join(dir, "ssh_config");
  writeFileSync(sshConfig, `Host 127.0.0.1\n  IdentityFile ${g.identityFile}\n  IdentitiesOnly yes\n`);
  return [
    "node",
    join(ROOT, "dist/cli/main.js"),
    "apply",
    "--yes",
    "-i",
    inventory,
    playbook,
    "--ssh-config",
    sshConfig,
    "--known-hosts",
    g.knownHostsFile,
    "--log",
    join(dir, `${tag}-audit.jsonl`),
    "--report-json",
    join(dir, `${tag}-report.json`),
  ];
}

interface AuditLine {
  time: string;
  type: string;
  action?: string;
  step?: string;
  durationMs?: number;
  status?: string;
}

/** One tool on its own fresh copy of the image, with its own guest; the guest is off afterwards. */
async function measure(
  tool: (typeof TOOLS)[number],
  o: {
    dir: string;
    prepared: string;
    survivorSha256: string;
    key: ReturnType<typeof makeKey>;
    artifacts: GuestArtifacts;
    tag: string;
  },
): Promise<Measure> {
  const { dir, tag } = o;
  const image = join(dir, `${tag}.qcow2`);
  execFileSync("cp", ["--sparse=always", o.prepared, image]);
  const g = await bootGuest({
    name: tag,
    dir,
    image,
    discard: tool.discard,
    artifacts: o.artifacts,
    key: o.key,
  });
  try {
    say(`  ${tool.id}: guest up in ${fmtS(g.bootMs)}; measuring`);
    const allocatedBefore = allocated(image);
    const cold = dropCaches();
    const loadBefore = loadavg()[0] ?? 0;
    let wallMs: number;
    let downtimeMs = 0;
    let toolMs = 0;
    let guestSideMs = 0;
    let allocatedAfter: number;
    let restartedAt = 0;
    if (tool.id === "reclaim-trim" || tool.id === "reclaim-fill") {
      const mode = tool.id === "reclaim-trim" ? "trim" : "fill";
      const r = run(reclaimArgv(dir, g, mode, tag), { env: { HOME: dir }, log: join(dir, `${tag}.log`) });
      wallMs = r.ms;
      allocatedAfter = allocated(image);
      const audit = readFileSync(join(dir, `${tag}-audit.jsonl`), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as AuditLine);
      const at = (type: string, action: string) =>
        Date.parse(audit.find((a) => a.type === type && a.action === action)?.time ?? "");
      guestSideMs = audit.find((a) => a.type === "guest-zero-end")?.durationMs ?? 0;
      if (mode === "fill") {
        downtimeMs = at("vm-end", "start") - at("vm-start", "shutdown");
        if (!Number.isFinite(downtimeMs))
          throw new Error(`reclaim did not shut down and restart:\n${r.stdout}`);
        restartedAt = performance.now();
        const disk = audit.find((a) => a.type === "disk-end");
        if (disk?.status !== "changed") throw new Error(`reclaim did not rewrite the image:\n${r.stdout}`);
        toolMs = disk.durationMs ?? 0;
      } else if (!/\/data: trimmed/.test(r.stdout)) {
        throw new Error(`reclaim did not trim:\n${r.stdout}`);
      }
    } else {
      const t0 = performance.now();
      if (!(await powerOff(g))) say(`  ${tool.id}: the guest did not power off by itself (ended by signal)`);
      const env = { ...LIBGUESTFS_ENV, TMPDIR: dir };
      if (tool.id === "virt-sparsify") {
        const out = join(dir, `${tag}.sparsified.qcow2`);
        // --check-tmpdir=fail: never wait at a prompt for a key press.
        toolMs = run(["virt-sparsify", "--check-tmpdir=fail", image, out], {
          env,
          log: join(dir, `${tag}.log`),
        }).ms;
        renameSync(out, image);
      } else {
        toolMs = run(["virt-sparsify", "--in-place", image], { env, log: join(dir, `${tag}.log`) }).ms;
      }
      allocatedAfter = allocated(image);
      await restart(g);
      restartedAt = performance.now();
      wallMs = restartedAt - t0;
      downtimeMs = wallMs;
    }
    const load: [number, number] = [loadBefore, loadavg()[0] ?? 0];
    const apparentAfter = statSync(image).size;
    // The guest is back (or never left): its data must be intact.
    const sha = await sha256In(g, "/data/keep.bin");
    const bootAfterMs = restartedAt ? performance.now() - restartedAt : 0;
    await powerOff(g);
    execFileSync("qemu-img", ["check", "-q", "-f", "qcow2", image]);
    return {
      wallMs,
      downtimeMs,
      toolMs,
      guestSideMs,
      allocatedBefore,
      allocatedAfter,
      apparentAfter,
      bootAfterMs,
      survivorIntact: sha === o.survivorSha256,
      cold,
      load,
    };
  } finally {
    await endGuest(g.pidFile);
    rmSync(image, { force: true });
  }
}

function version(argv: string[]): string {
  const r = spawnSync(argv[0] ?? "", argv.slice(1), { encoding: "utf8" });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0] ?? "?";
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

let workDir: string | undefined;
const pidFiles: string[] = [];
process.once("SIGINT", () => {
  // No QEMU of ours and no image outlives an interrupted bench.
  for (const p of pidFiles) {
    try {
      const pid = Number(readFileSync(p, "utf8").trim());
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(p)) process.kill(pid, "SIGKILL");
    } catch {
      // Not running.
    }
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  process.exit(130);
});

let setup: ReturnType<typeof ensureHostPackages>;
let appliance: ReturnType<typeof ensureAppliance>;
try {
  setup = ensureHostPackages(say);
  appliance = ensureAppliance(say);
} catch (e) {
  console.error((e as Error).message);
  process.exit(1);
}
say(`appliance booted in ${fmtS(appliance.ms)} (accel ${appliance.accel})`);
if (spawnSync("npm", ["run", "-s", "build"], { cwd: ROOT, stdio: "inherit" }).status !== 0) {
  console.error("npm run -s build failed");
  process.exit(1);
}
const artifacts = await ensureGuestArtifacts({ log: say });

workDir = mkdtempSync(join(values.dir, "reclaim-bench-sparsify-"));
const dir = workDir;
const rows = TOOLS.map((t) => ({ ...t, runs: [] as Measure[] }));
let prepared: Awaited<ReturnType<typeof makeDataImage>>;
try {
  say(`making the image: ${SIZE_GIB} GiB ext4, ${DELETED_MiB} MiB written and deleted, ${KEPT_MiB} MiB kept`);
  const t0 = performance.now();
  prepared = await makeDataImage(join(dir, "prepared.qcow2"), {
    sizeMiB: SIZE_MiB,
    fillMiB: DELETED_MiB + KEPT_MiB,
    deleteMiB: DELETED_MiB,
    fileMiB: 64,
  });
  say(`  ${fmtMiB(prepared.allocatedBytes)} allocated, made in ${fmtS(performance.now() - t0)}`);
  const key = makeKey(dir);
  for (let i = 0; i < RUNS; i++) {
    for (const row of rows) {
      const tag = `${row.id}-${i + 1}`;
      pidFiles.push(join(dir, `${tag}.pid`));
      const m = await measure(row, {
        dir,
        prepared: prepared.path,
        survivorSha256: prepared.survivorSha256,
        key,
        artifacts,
        tag,
      });
      row.runs.push(m);
      say(
        `run ${i + 1}: ${row.id}: wall ${fmtS(m.wallMs)}, downtime ${fmtS(m.downtimeMs)}, load ${m.load.map((l) => l.toFixed(1)).join("→")}, ` +
          `${fmtMiB(m.allocatedBefore)} → ${fmtMiB(m.allocatedAfter)} allocated, survivor ${m.survivorIntact ? "intact" : "CHANGED"}`,
      );
    }
  }
} finally {
  for (const p of pidFiles) await endGuest(p);
  rmSync(dir, { recursive: true, force: true });
}

const summary = rows.map((row) => {
  const pick = (f: (m: Measure) => number) => median(row.runs.map(f));
  return {
    id: row.id,
    label: row.label,
    discard: row.discard,
    wallMs: pick((m) => m.wallMs),
    downtimeMs: pick((m) => m.downtimeMs),
    toolMs: pick((m) => m.toolMs),
    guestSideMs: pick((m) => m.guestSideMs),
    allocatedBefore: pick((m) => m.allocatedBefore),
    allocatedAfter: pick((m) => m.allocatedAfter),
    apparentAfter: pick((m) => m.apparentAfter),
    bootAfterMs: pick((m) => m.bootAfterMs),
    survivorIntact: row.runs.every((m) => m.survivorIntact),
    runs: row.runs,
  };
});
const base = summary.find((s) => s.id === BASELINE);
/** tool ÷ virt-sparsify --in-place: below 1 is better in every column. */
const ratio = (x: number, b: number | undefined) => (!b ? "–" : x === 0 ? "0×" : `${(x / b).toFixed(2)}×`);
const cold = rows.every((r) => r.runs.every((m) => m.cold));

console.log(
  `\n${SIZE_GIB} GiB ext4 data disk, ${DELETED_MiB} MiB written and deleted, ${KEPT_MiB} MiB kept; ` +
    `${fmtMiB(prepared.allocatedBytes)} allocated before; ${RUNS} run(s), median; ${cold ? "cold" : "warm"} page cache\n`,
);
console.log(
  "| tool | wall time | guest downtime | allocated after | file size after | wall vs in-place | allocated vs in-place | downtime vs in-place |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const s of summary) {
  console.log(
    `| ${s.label} | ${fmtS(s.wallMs)} | ${s.downtimeMs ? fmtS(s.downtimeMs) : "none"} | ${fmtMiB(s.allocatedAfter)} | ` +
      `${(s.apparentAfter / GiB).toFixed(2)} GiB | ${ratio(s.wallMs, base?.wallMs)} | ` +
      `${ratio(s.allocatedAfter, base?.allocatedAfter)} | ${ratio(s.downtimeMs, base?.downtimeMs)} |`,
  );
}
console.log(
  `\nvirt-sparsify's own run: copying ${fmtS(summary[2]?.toolMs ?? 0)}, in place ${fmtS(summary[3]?.toolMs ?? 0)}; ` +
    `reclaim inside the guest: trim ${fmtS(summary[0]?.guestSideMs ?? 0)}, fill ${fmtS(summary[1]?.guestSideMs ?? 0)}; ` +
    `reclaim's rewrite (convert, verify, swap) ${fmtS(summary[1]?.toolMs ?? 0)}. The guest's boot after a restart (not counted): ` +
    `${summary
      .filter((s) => s.bootAfterMs)
      .map((s) => fmtS(s.bootAfterMs))
      .join(", ")}.`,
);
if (!summary.every((s) => s.survivorIntact)) console.log("WARNING: a survivor's checksum changed");
const busiest = Math.max(...rows.flatMap((r) => r.runs.flatMap((m) => m.load)));
if (busiest > cpus().length + 0.5) {
  console.log(
    `WARNING: the machine was busy with other work (1-minute load average up to ${busiest.toFixed(1)} on ${cpus().length} cores): the timings are skewed`,
  );
}

const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? "?",
  memoryGiB: Math.round(totalmem() / GiB),
  kernel: version(["uname", "-r"]),
  debian: readFileSync("/etc/debian_version", "utf8").trim(),
  node: process.version,
  qemu: version(["qemu-system-x86_64", "--version"]),
  virtSparsify: version(["virt-sparsify", "--version"]),
  accel: "tcg (guest and libguestfs appliance)",
  guestKernel: artifacts.kernelPackage,
};
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(
  join(ROOT, "bench/results/vs-virt-sparsify.json"),
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      sizeGiB: SIZE_GIB,
      deleted: DELETED,
      kept: KEPT,
      runs: RUNS,
      coldCache: cold,
      machine,
      setup: {
        installed: setup.installed,
        hostKernels: setup.kernels,
        applianceCheckMs: Math.round(appliance.ms),
      },
      image: {
        allocatedBytes: prepared.allocatedBytes,
        deletedBytes: prepared.deletedBytes,
        keptBytes: prepared.keptBytes,
      },
      baseline: BASELINE,
      rows: summary,
    },
    null,
    2,
  )}\n`,
);
