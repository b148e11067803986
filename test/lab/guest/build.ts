/**
 * The guest lab's kernel and base initramfs, built once by build-initramfs.sh and cached under
 * `$RECLAIM_GUEST_CACHE/<hash of inputs>` (default root /var/cache/reclaim-guest-lab). The hash
 * covers the build scripts, the kernel image package linux-image-amd64 depends on (name and
 * version, from apt's lists), and the installed busybox-static, dropbear-bin, qemu-guest-agent and
 * libc6 versions.
 * A cache entry is complete or absent: it is built in a temp dir beside it and renamed into place,
 * under a file lock so parallel vitest workers build it once.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { registerCleanup } from "../cleanup.js";
import { withFileLock } from "../hostlock.js";
import { procInfo, signal } from "../proc.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
/** Files whose content is part of the cache key (everything that ends up in the initramfs). */
const SCRIPT_FILES = ["build-initramfs.sh", "init", "udhcpc.script"] as const;
export const DEFAULT_CACHE_ROOT = "/var/cache/reclaim-guest-lab";
const ENV_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

export interface GuestArtifacts {
  /** The cache entry: `<root>/<hash>`. */
  dir: string;
  hash: string;
  /** What QEMU's -kernel gets: the uncompressed ELF (PVH boot) when available, else the bzImage. */
  kernel: string;
  /** The bzImage as Debian ships it. */
  vmlinuz: string;
  /** The base initramfs (uncompressed newc cpio), holding no key. */
  initrd: string;
  kernelVersion: string;
  kernelPackage: string;
  /** Module load order, as computed at build time from depends=/softdep. */
  modules: string[];
  manifest: Record<string, string>;
  /** True when this call built the entry (false: it was cached). */
  built: boolean;
  /** Time this call spent (build or cache lookup), ms. */
  ms: number;
}

export interface BuildOptions {
  /** Cache root; default `$RECLAIM_GUEST_CACHE` or /var/cache/reclaim-guest-lab. */
  cacheRoot?: string;
  /** Bound on the whole build (download, unpack, pack); default 10 minutes. */
  timeoutMs?: number;
  /** Progress lines (the build script's stderr). */
  log?: (line: string) => void;
}

export function guestCacheRoot(): string {
  return process.env.RECLAIM_GUEST_CACHE || DEFAULT_CACHE_ROOT;
}

function run(file: string, args: readonly string[]): string {
  return execFileSync(file, args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 30_000,
    env: { PATH: ENV_PATH, LC_ALL: "C" },
  });
}

function installedVersion(pkg: string): string {
  try {
    return run("dpkg-query", ["-W", "-f", "$" + "{Version}", pkg]).trim() || "none";
  } catch {
    return "none";
  }
}

/**
 * The image package linux-image-amd64 depends on, with its version, from apt's lists. apt-cache
 * takes about a second here (no pkgcache.bin), so the answer is remembered in the cache root
 * until the lists change.
 */
function kernelPackage(root: string): { name: string; version: string } | undefined {
  const lists = "/var/lib/apt/lists";
  let stamp = "";
  try {
    stamp = readdirSync(lists)
      .map((f) => `${f}:${statSync(join(lists, f)).mtimeMs}`)
      .sort()
      .join(",");
  } catch {
    return undefined;
  }
  const memoFile = join(root, "kernel-package.json");
  try {
    const m = JSON.parse(readFileSync(memoFile, "utf8")) as { stamp: string; name: string; version: string };
    if (m.stamp === stamp && m.name && m.version) return { name: m.name, version: m.version };
  } catch {
    // Not remembered yet.
  }
  try {
    const show = run("apt-cache", ["show", "--no-all-versions", "linux-image-amd64"]);
    const m = /^Depends:.*?\b(linux-image-[0-9][^\s,(]*)\s*\(=\s*([^)\s]+)\)/m.exec(show);
    if (!m?.[1] || !m[2]) return undefined;
    const found = { name: m[1], version: m[2] };
    try {
      writeFileSync(memoFile, `${JSON.stringify({ stamp, ...found })}\n`);
    } catch {
      // Read-only cache root: look it up again next time.
    }
    return found;
  } catch {
    return undefined;
  }
}

interface Inputs {
  scripts: string;
  busybox: string;
  dropbear: string;
  qemuGa: string;
  libc: string;
  kernelPackage: string;
  kernelVersion: string;
}

function localInputs(): Omit<Inputs, "kernelPackage" | "kernelVersion"> {
  const h = createHash("sha256");
  for (const f of SCRIPT_FILES)
    h.update(`${f}\0`)
      .update(readFileSync(join(HERE, f)))
      .update("\0");
  return {
    scripts: h.digest("hex"),
    busybox: installedVersion("busybox-static"),
    dropbear: installedVersion("dropbear-bin"),
    qemuGa: installedVersion("qemu-guest-agent"),
    libc: installedVersion("libc6"),
  };
}

function hashOf(inputs: Inputs): string {
  return createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 16);
}

function parseManifest(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

function complete(dir: string): boolean {
  return ["manifest", "initrd.img", "vmlinuz", "inputs.json"].every((f) => existsSync(join(dir, f)));
}

function artifactsIn(dir: string, hash: string, built: boolean, ms: number): GuestArtifacts {
  const manifest = parseManifest(readFileSync(join(dir, "manifest"), "utf8"));
  const vmlinux = join(dir, "vmlinux");
  const vmlinuz = join(dir, "vmlinuz");
  return {
    dir,
    hash,
    kernel: manifest.pvh === "yes" && existsSync(vmlinux) ? vmlinux : vmlinuz,
    vmlinuz,
    initrd: join(dir, "initrd.img"),
    kernelVersion: manifest.kernel_version ?? "?",
    kernelPackage: manifest.kernel_package ?? "?",
    modules: (manifest.modules ?? "").split(" ").filter(Boolean),
    manifest,
    built,
    ms,
  };
}

/**
 * Without apt's lists (apt-cache cannot name the kernel package) a cache entry built from the same
 * scripts and packages still serves: the newest one.
 */
function newestMatchingEntry(root: string, local: ReturnType<typeof localInputs>): string | undefined {
  let best: { dir: string; mtime: number } | undefined;
  let names: string[] = [];
  try {
    names = readdirSync(root);
  } catch {
    return undefined;
  }
  for (const name of names) {
    if (!/^[0-9a-f]{16}$/.test(name)) continue;
    const dir = join(root, name);
    if (!complete(dir)) continue;
    try {
      const inputs = JSON.parse(readFileSync(join(dir, "inputs.json"), "utf8")) as Inputs;
      const same = (Object.keys(local) as (keyof typeof local)[]).every((k) => inputs[k] === local[k]);
      const mtime = statSync(dir).mtimeMs;
      if (same && (!best || mtime > best.mtime)) best = { dir, mtime };
    } catch {
      // A damaged entry: ignore it.
    }
  }
  return best?.dir;
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Runs build-initramfs.sh OUT WORK PKG, bounded; the reaper ends it and removes `tmp` if we die. */
async function runBuild(tmp: string, pkg: string, timeoutMs: number, log?: (l: string) => void) {
  const out = join(tmp, "out");
  const work = join(tmp, "work");
  mkdirSync(out, { recursive: true });
  mkdirSync(work, { recursive: true });
  const child: ChildProcess = spawn("bash", [join(HERE, "build-initramfs.sh"), out, work, pkg], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: { PATH: ENV_PATH, LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive", TMPDIR: work },
  });
  const spawned = child.pid ? procInfo(child.pid) : undefined;
  const unregister = spawned
    ? registerCleanup({ kind: "process", pid: spawned.pid, start: spawned.start, dir: tmp })
    : registerCleanup({ kind: "dir", path: tmp });
  let output = "";
  let partial = "";
  const onData = (c: string) => {
    output += c;
    if (output.length > 1 << 20) output = output.slice(-(1 << 20));
    if (log) {
      partial += c;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) log(l);
    }
  };
  child.stdout?.setEncoding("utf8").on("data", onData);
  child.stderr?.setEncoding("utf8").on("data", onData);
  let timedOut = false;
  const result = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
    const timer = setTimeout(() => {
      timedOut = true;
      if (spawned) {
        signal(spawned, "SIGKILL");
        try {
          process.kill(-spawned.pid, "SIGKILL");
        } catch {
          // The group is gone already.
        }
      }
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve({ code: null, error });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code });
    });
  });
  return { ...result, output, timedOut, unregister, out };
}

/** How many built entries the cache keeps (each about 85 MB); older ones go after a build. */
const KEEP_ENTRIES = 3;

/**
 * Runs under the build lock: removes leftovers of builds that died (`.tmp-*`; no build runs
 * meanwhile) and all but the KEEP_ENTRIES most recent entries, never `current`.
 */
function prune(root: string, current: string): void {
  const entries: { dir: string; mtime: number }[] = [];
  for (const name of readdirSync(root)) {
    const path = join(root, name);
    if (name.startsWith(".tmp-")) rmSync(path, { recursive: true, force: true });
    else if (/^[0-9a-f]{16}$/.test(name) && path !== current) {
      entries.push({ dir: path, mtime: statSync(path).mtimeMs });
    }
  }
  entries.sort((a, b) => b.mtime - a.mtime);
  for (const e of entries.slice(KEEP_ENTRIES - 1)) rmSync(e.dir, { recursive: true, force: true });
}

/** One build (or lookup) per cache root per process. */
const memo = new Map<string, Promise<GuestArtifacts>>();

/**
 * The cached kernel + initramfs, built first when missing. Needs (on a build) root, apt's lists
 * (`apt-get update`), network access to Debian's archive, and the host tools busybox-static,
 * dropbear-bin, qemu-guest-agent, kmod, cpio, xz-utils. Memoised per process.
 */
export function ensureGuestArtifacts(o: BuildOptions = {}): Promise<GuestArtifacts> {
  const root = o.cacheRoot ?? guestCacheRoot();
  const known = memo.get(root);
  if (known) return known;
  const p = build(root, o).catch((e: unknown) => {
    memo.delete(root);
    throw e;
  });
  memo.set(root, p);
  return p;
}

async function build(root: string, o: BuildOptions): Promise<GuestArtifacts> {
  const started = performance.now();
  const timeoutMs = o.timeoutMs ?? 600_000;
  const local = localInputs();
  try {
    mkdirSync(root, { recursive: true });
  } catch (e) {
    throw new Error(
      `guest lab: cannot create the cache ${root} (${(e as Error).message}); set RECLAIM_GUEST_CACHE to a writable directory`,
    );
  }
  const pkg = kernelPackage(root);
  if (!pkg) {
    const fallback = newestMatchingEntry(root, local);
    if (fallback) return artifactsIn(fallback, fallback.split("/").pop() ?? "", false, 0);
    throw new Error(
      "guest lab: apt-cache cannot name the package linux-image-amd64 depends on: run `apt-get update` first",
    );
  }
  const inputs: Inputs = { ...local, kernelPackage: pkg.name, kernelVersion: pkg.version };
  const hash = hashOf(inputs);
  const dir = join(root, hash);
  if (complete(dir)) return artifactsIn(dir, hash, false, performance.now() - started);

  for (const tool of [
    "busybox",
    "dropbear",
    "dropbearkey",
    "qemu-ga",
    "modinfo",
    "depmod",
    "cpio",
    "xz",
    "flock",
  ]) {
    try {
      run("sh", ["-c", `command -v ${tool}`]);
    } catch {
      throw new Error(
        `guest lab: building the guest needs \`${tool}\` (apt-get install busybox-static dropbear-bin qemu-guest-agent kmod cpio xz-utils util-linux)`,
      );
    }
  }
  return withFileLock(
    join(root, ".build.lock"),
    async () => {
      // Another worker may have built it while we waited.
      if (complete(dir)) return artifactsIn(dir, hash, false, performance.now() - started);
      const tmp = join(root, `.tmp-${hash}-${process.pid}`);
      rmSync(tmp, { recursive: true, force: true });
      const r = await runBuild(tmp, pkg.name, timeoutMs, o.log);
      try {
        if (r.code !== 0 || r.timedOut) {
          const why = r.timedOut
            ? `timed out after ${timeoutMs} ms`
            : r.error
              ? r.error.message
              : `exited with code ${r.code}`;
          throw new Error(`guest lab: building the guest kernel/initramfs ${why}:\n${tail(r.output, 40)}`);
        }
        writeFileSync(join(r.out, "inputs.json"), `${JSON.stringify(inputs, null, 2)}\n`);
        writeFileSync(join(r.out, "build.log"), r.output);
        renameSync(r.out, dir);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
        r.unregister();
      }
      prune(root, dir);
      return artifactsIn(dir, hash, true, performance.now() - started);
    },
    timeoutMs + 60_000,
  );
}
