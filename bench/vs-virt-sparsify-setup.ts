/**
 * What bench/vs-virt-sparsify needs on this machine, and how it gets it: Debian's virt-sparsify
 * (libguestfs-tools) and a kernel in /boot for supermin to build libguestfs' appliance from
 * (linux-image-amd64). As root it installs what is missing with apt-get; otherwise it prints the
 * command and exits. Then it checks that the appliance really boots (libguestfs-test-tool), which
 * also builds supermin's cached appliance, so no timed run pays for that.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { BUILD_TOOLS } from "../src/demo/guest-artifacts.js";
import { type HostTool, missingPackages } from "../src/demo/host-tools.js";
import { VM_TOOLS } from "../src/demo/vm-demo.js";

/**
 * libguestfs' appliance as the bench runs it: QEMU directly (no libvirtd), and software emulation
 * like the guest lab's. This machine has a /dev/kvm, but QEMU 7.2 aborts on it at once
 * (`kvm_buf_set_msrs: Assertion ... failed`), which libguestfs picks by default and fails on.
 */
export const LIBGUESTFS_ENV = {
  LIBGUESTFS_BACKEND: "direct",
  LIBGUESTFS_BACKEND_SETTINGS: "force_tcg",
} as const;

const TOOLS: readonly HostTool[] = [
  ...VM_TOOLS,
  { program: "virt-sparsify", debianPackage: "libguestfs-tools" },
  { program: "libguestfs-test-tool", debianPackage: "libguestfs-tools" },
  ...BUILD_TOOLS,
];

/** supermin builds the appliance from the host's own kernel: without one it cannot boot. */
function hostKernels(): string[] {
  try {
    return readdirSync("/boot").filter((f) => f.startsWith("vmlinuz-"));
  } catch {
    return [];
  }
}

/** The Debian packages this machine lacks for the bench. */
export function missingForBench(): string[] {
  const missing = missingPackages(TOOLS);
  if (hostKernels().length === 0) missing.push("linux-image-amd64");
  return missing;
}

export interface Setup {
  /** What apt-get installed in this run (empty when all was there). */
  installed: string[];
  kernels: string[];
}

/**
 * Installs what is missing (as root), or throws with the command to run. Recommends are left out:
 * with them libguestfs-tools brings ~170 packages, without them ~120 (and supermin's recommended
 * kernel is named explicitly instead).
 */
export function ensureHostPackages(log: (line: string) => void): Setup {
  const missing = missingForBench();
  const command = `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      throw new Error(`the bench needs Debian packages: run as root\n  apt-get update && ${command}`);
    }
    log(`installing ${missing.join(" ")} (${command})`);
    const install = () =>
      spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], {
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
        stdio: ["ignore", "inherit", "inherit"],
        timeout: 20 * 60_000,
      }).status;
    // A fresh machine's package lists may be empty or stale: update once, then try again.
    if (install() !== 0) {
      spawnSync("apt-get", ["update", "-q"], {
        stdio: ["ignore", "inherit", "inherit"],
        timeout: 5 * 60_000,
      });
      if (install() !== 0) throw new Error(`apt-get install failed: ${command}`);
    }
    const still = missingForBench();
    if (still.length > 0) throw new Error(`still missing after apt-get install: ${still.join(" ")}`);
  }
  return { installed: missing, kernels: hostKernels() };
}

export interface ApplianceCheck {
  ms: number;
  /** "tcg" always here: see LIBGUESTFS_ENV. */
  accel: string;
}

/**
 * Boots libguestfs' appliance once with libguestfs-test-tool; throws with the tail of its output
 * when it does not come up. The first call on a machine also builds supermin's appliance cache.
 */
export function ensureAppliance(log: (line: string) => void): ApplianceCheck {
  log("checking that libguestfs' appliance boots (libguestfs-test-tool, TCG)");
  const t0 = performance.now();
  const r = spawnSync("libguestfs-test-tool", [], {
    env: { ...process.env, ...LIBGUESTFS_ENV },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 10 * 60_000,
    maxBuffer: 64 << 20,
  });
  const ms = performance.now() - t0;
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (r.status !== 0 || !out.includes("TEST FINISHED OK")) {
    const tail = out.trimEnd().split("\n").slice(-25).join("\n");
    throw new Error(
      `virt-sparsify's appliance does not boot here (libguestfs-test-tool exit ${r.status ?? r.signal}):\n${tail}`,
    );
  }
  const accel = /-machine accel=([a-z:]+)/.exec(out)?.[1] ?? "?";
  return { ms, accel };
}
