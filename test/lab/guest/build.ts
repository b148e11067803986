/**
 * The guest lab's kernel and base initramfs: the builder and cache `reclaim demo --vm` uses too
 * (src/demo/guest-artifacts.ts, building with lab/guest/build-initramfs.sh), with each build
 * registered with the lab's reaper, so a test process that dies leaves no build running and no
 * scratch dir behind.
 */
import {
  type BuildOptions,
  ensureGuestArtifacts as ensureShared,
  type GuestArtifacts,
} from "../../../src/demo/guest-artifacts.js";
import { registerCleanup } from "../cleanup.js";
import { procInfo } from "../proc.js";

export { DEFAULT_CACHE_ROOT, guestCacheRoot } from "../../../src/demo/guest-artifacts.js";
export type { BuildOptions, GuestArtifacts };

/**
 * The cached kernel + initramfs, built first when missing (needs root, apt's lists, network access
 * to Debian's archive and the tools of BUILD_TOOLS). Memoised per process.
 */
export function ensureGuestArtifacts(o: BuildOptions = {}): Promise<GuestArtifacts> {
  return ensureShared({
    ...o,
    onBuildStarted({ pid, scratchDir }) {
      const p = procInfo(pid);
      return p
        ? registerCleanup({ kind: "process", pid: p.pid, start: p.start, dir: scratchDir })
        : registerCleanup({ kind: "dir", path: scratchDir });
    },
  });
}
