/**
 * bench/convert-limit: `qemu-img convert` as reclaim runs it, against the physical limit (reading
 * the image file once), and against the options that could beat it, side by side in one run.
 *
 *   npx tsx bench/convert-limit.ts [--sizes 1,4,16] [--fill 0.25,0.75] [--runs 1] [--dir /var/tmp]
 *
 * Each image (GiB virtual × share written) holds half random data (what a guest's deleted files
 * leave: convert must copy it) and half zeros stored as data (what a zero-fill leaves: convert
 * drops it). Every timing starts from a cold page cache (`echo 3 > /proc/sys/vm/drop_caches`;
 * where that is refused the table says "warm"). A conversion's time includes flushing its output,
 * as reclaim does before verifying. Prints a table per image and writes
 * bench/results/convert-limit.json.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { convertArgv } from "../src/tasks/host-commands.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1,4,16" },
    fill: { type: "string", default: "0.25,0.75" },
    runs: { type: "string", default: "1" },
    dir: { type: "string", default: "/var/tmp" },
  },
});
const SIZES = values.sizes.split(",").map(Number);
const FILLS = values.fill.split(",").map(Number);
const RUNS = Number(values.runs);
const ROOT = new URL("..", import.meta.url).pathname;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** reclaim's own argv for a plain qcow2 → qcow2 rewrite (options as carried over from a default image). */
const RECLAIM = convertArgv(
  {
    sourceFormat: "qcow2",
    targetFormat: "qcow2",
    options: ["compat=1.1", "cluster_size=65536"],
    bitmaps: false,
    compress: false,
    keepBackup: false,
  },
  "SRC",
  "DST",
);

interface Variant {
  name: string;
  argv: string[];
}

/** The candidates: reclaim's command, and each option that could matter, one at a time. */
const VARIANTS: Variant[] = [
  { name: "reclaim (as it runs)", argv: RECLAIM },
  { name: "-m 16 (more coroutines)", argv: withOptions(RECLAIM, ["-m", "16"]) },
  { name: "-m 16 -W (more coroutines, out of order)", argv: withOptions(RECLAIM, ["-m", "16", "-W"]) },
  { name: "-t none -T none (O_DIRECT both sides)", argv: withOptions(RECLAIM, ["-t", "none", "-T", "none"]) },
  { name: "-t none -m 16 -W", argv: withOptions(RECLAIM, ["-t", "none", "-m", "16", "-W"]) },
  { name: "-S 64k (zero detection per cluster)", argv: withOptions(RECLAIM, ["-S", "64k"]) },
  { name: "-c (compressed)", argv: withOptions(RECLAIM, ["-c"]) },
];

function withOptions(argv: readonly string[], extra: readonly string[]): string[] {
  // After "convert": qemu-img reads options anywhere before the file names.
  return [argv[0] as string, argv[1] as string, ...extra, ...argv.slice(2)];
}

let cold = true;
function dropCaches(): void {
  execFileSync("sync");
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
  } catch {
    cold = false;
  }
}

function timed(argv: readonly string[]): number {
  const started = performance.now();
  const r = spawnSync(argv[0] as string, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return (performance.now() - started) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** A qcow2 of `gib` GiB virtual, `share` of it written: half random, half zeros stored as data. */
function makeImage(dir: string, gib: number, share: number): string {
  const image = join(dir, `source-${gib}g-${share}.qcow2`);
  const random = join(dir, "random-64m");
  execFileSync("dd", ["if=/dev/urandom", `of=${random}`, "bs=1M", "count=64", "status=none"]);
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", image, `${gib}G`]);
  // Scattered in 64 MiB stripes, the way a filesystem spreads files; zeros written as data
  // (-P 0, not -z), as a guest's zero-fill leaves them.
  const stripes = Math.max(1, Math.floor((gib * 1024 * share) / 64));
  const stride = Math.floor((gib * 1024) / stripes);
  const commands = Array.from({ length: stripes }, (_, i) =>
    i < stripes / 2 ? `write -q -s ${random} ${i * stride}M 64M` : `write -q -P 0 ${i * stride}M 64M`,
  );
  execFileSync("qemu-io", ["-f", "qcow2", ...commands.flatMap((c) => ["-c", c]), image]);
  rmSync(random);
  return image;
}

const results: Record<string, unknown>[] = [];
const work = mkdtempSync(join(values.dir, "reclaim-bench-convert-"));
try {
  for (const gib of SIZES) {
    for (const share of FILLS) {
      const image = makeImage(work, gib, share);
      const fileBytes = statSync(image).size;
      const rows: { name: string; seconds: number; outBytes: number }[] = [];
      const read: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        dropCaches();
        read.push(timed(["dd", `if=${image}`, "of=/dev/null", "bs=4M", "status=none"]));
      }
      rows.push({ name: "read the file once (dd to /dev/null)", seconds: median(read), outBytes: 0 });
      for (const v of VARIANTS) {
        const times: number[] = [];
        let outBytes = 0;
        for (let r = 0; r < RUNS; r++) {
          const out = join(work, "out.qcow2");
          rmSync(out, { force: true });
          dropCaches();
          const argv = v.argv.map((a) => (a === "SRC" ? image : a === "DST" ? out : a));
          times.push(timed(argv) + timed(["sync", "--", out]));
          outBytes = statSync(out).blocks * 512;
          rmSync(out);
        }
        rows.push({ name: v.name, seconds: median(times), outBytes });
      }
      const base = rows[0]?.seconds ?? 1;
      console.log(
        `\n${gib} GiB virtual, ${Math.round(share * 100)}% written (${(fileBytes / GiB).toFixed(2)} GiB file), ${cold ? "cold" : "warm"} cache, median of ${RUNS}`,
      );
      console.log("| command | time | × read | output |\n| --- | ---: | ---: | ---: |");
      for (const row of rows) {
        console.log(
          `| ${row.name} | ${row.seconds.toFixed(2)} s | ${(row.seconds / base).toFixed(2)}× | ${row.outBytes ? `${(row.outBytes / MiB).toFixed(0)} MiB` : "–"} |`,
        );
      }
      results.push({ gib, share, fileBytes, cache: cold ? "cold" : "warm", runs: RUNS, rows });
      rmSync(image);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(
  join(ROOT, "bench/results/convert-limit.json"),
  `${JSON.stringify({ date: new Date().toISOString(), results }, null, 2)}\n`,
);
