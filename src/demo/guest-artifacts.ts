/**
 * The small Linux guest that `reclaim demo --vm` and the test suite's guest lab boot: Debian's
 * kernel and a busybox/dropbear initramfs, built once by lab/guest/build-initramfs.sh and cached
 * under `$RECLAIM_GUEST_CACHE/<hash of inputs>` (default root /var/cache/reclaim-guest-lab). The
 * hash covers the build scripts, the kernel image package linux-image-amd64 depends on (name and
 * version, from apt's lists), and the installed busybox-static, dropbear-bin, qemu-guest-agent and
 * libc6 versions.
 * A cache entry is complete or absent: it is built in a temp dir beside it and renamed into place,
 * under a file lock so parallel builders (test workers, a demo) build it once.
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
import { RunError } from "../errors.js";
import { withFileLock } from "./file-lock.js";
import { type HostTool, missingPackages } from "./host-tools.js";

/** lab/guest at the package's root: the same two levels up from src/demo and dist/demo. */
export const LAB_GUEST_DIR = fileURLToPath(new URL("../../lab/guest/", import.meta.url));
/** Files whose content is part of the cache key (everything that ends up in the initramfs). */
const SCRIPT_FILES = ["build-initramfs.sh", "init", "udhcpc.script"] as const;
export const DEFAULT_CACHE_ROOT = "/var/cache/reclaim-guest-lab";
const ENV_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** What building an entry needs besides apt (the script checks the details, e.g. a static busybox). */
export const BUILD_TOOLS: readonly HostTool[] = [
  { program: "busybox", debianPackage: "busybox-static" },
  { program: "dropbear", debianPackage: "dropbear-bin" },
  { program: "dropbearkey", debianPackage: "dropbear-bin" },
  { program: "qemu-ga", debianPackage: "qemu-guest-agent" },
  { program: "modinfo", debianPackage: "kmod" },
  { program: "depmod", debianPackage: "kmod" },
  { program: "cpio", debianPackage: "cpio" },
  { program: "xz", debianPackage: "xz-utils" },
  { program: "flock", debianPackage: "util-linux" },
  { program: "apt-get", debianPackage: "apt" },
];

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
  /** Progress lines (the build script's output). */
  log?: (line: string) => void;
  /** Ends a build under way (its whole process group). */
  signal?: AbortSignal;
  /**
   * Told of the build process (leader of its own process group) and its scratch dir as it
   * starts, so a caller can arrange their cleanup should it die first; returns the undo.
   */
  onBuildStarted?: (build: { pid: number; scratchDir: string }) => () => void;
}

export function guestCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.RECLAIM_GUEST_CACHE || DEFAULT_CACHE_ROOT;
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
      .update(readFileSync(join(LAB_GUEST_DIR, f)))
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

/** Runs build-initramfs.sh OUT WORK PKG in its own process group, bounded in time. */
async function runBuild(tmp: string, pkg: string, timeoutMs: number, o: BuildOptions) {
  const out = join(tmp, "out");
  const work = join(tmp, "work");
  mkdirSync(out, { recursive: true });
  mkdirSync(work, { recursive: true });
  const child: ChildProcess = spawn("bash", [join(LAB_GUEST_DIR, "build-initramfs.sh"), out, work, pkg], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: { PATH: ENV_PATH, LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive", TMPDIR: work },
  });
  const pid = child.pid;
  const undo = pid !== undefined ? o.onBuildStarted?.({ pid, scratchDir: tmp }) : undefined;
  let output = "";
  let partial = "";
  const onData = (c: string) => {
    output += c;
    if (output.length > 1 << 20) output = output.slice(-(1 << 20));
    if (o.log) {
      partial += c;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) o.log(l);
    }
  };
  child.stdout?.setEncoding("utf8").on("data", onData);
  child.stderr?.setEncoding("utf8").on("data", onData);
  let timedOut = false;
  // The group is the script and what it started: all ours, and `pid` cannot be reused while the
  // child is not yet reaped (we only stop it before "close").
  const endGroup = () => {
    if (pid === undefined) return;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // The group is gone already.
    }
  };
  const onAbort = () => endGroup();
  o.signal?.addEventListener("abort", onAbort, { once: true });
  const result = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
    const timer = setTimeout(() => {
      timedOut = true;
      endGroup();
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
  o.signal?.removeEventListener("abort", onAbort);
  return { ...result, output, timedOut, unregister: undo ?? (() => {}), out };
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
 * The cached kernel + initramfs, built first when missing. A build needs root, apt's lists
 * (`apt-get update`), network access to Debian's archive, and the host tools of BUILD_TOOLS; when
 * some are missing it throws a RunError naming their packages. Memoised per process.
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
    throw new RunError(
      `guest kernel cache: cannot create ${root} (${(e as Error).message}); set RECLAIM_GUEST_CACHE to a writable directory`,
    );
  }
  const pkg = kernelPackage(root);
  if (!pkg) {
    const fallback = newestMatchingEntry(root, local);
    if (fallback) return artifactsIn(fallback, fallback.split("/").pop() ?? "", false, 0);
    throw new RunError(
      "guest kernel cache: apt-cache cannot name the package linux-image-amd64 depends on: run `apt-get update` first",
    );
  }
  const inputs: Inputs = { ...local, kernelPackage: pkg.name, kernelVersion: pkg.version };
  const hash = hashOf(inputs);
  const dir = join(root, hash);
  if (complete(dir)) return artifactsIn(dir, hash, false, performance.now() - started);

  const missing = missingPackages(BUILD_TOOLS, { PATH: ENV_PATH });
  if (missing.length > 0) {
    throw new RunError(
      `building the guest kernel and initramfs needs the packages ${missing.join(", ")}: apt-get install ${missing.join(" ")}`,
    );
  }
  return withFileLock(
    join(root, ".build.lock"),
    async () => {
      // Another process may have built it while we waited.
      if (complete(dir)) return artifactsIn(dir, hash, false, performance.now() - started);
      const tmp = join(root, `.tmp-${hash}-${process.pid}`);
      rmSync(tmp, { recursive: true, force: true });
      const r = await runBuild(tmp, pkg.name, timeoutMs, o);
      try {
        if (r.code !== 0 || r.timedOut || o.signal?.aborted) {
          const why = o.signal?.aborted
            ? "was interrupted"
            : r.timedOut
              ? `timed out after ${timeoutMs} ms`
              : r.error
                ? r.error.message
                : `exited with code ${r.code}`;
          throw new RunError(`building the guest kernel/initramfs ${why}:\n${tail(r.output, 40)}`);
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
