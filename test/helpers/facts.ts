/** Synthetic disk facts for planner tests: a healthy, bloated qcow2 unless told otherwise. */
import type { ReclaimPolicy } from "../../src/config/model.js";
import type { DiskFacts } from "../../src/facts/disk.js";
import type { ImageInfo } from "../../src/facts/image-info.js";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export const policy: ReclaimPolicy = {
  minReclaimableBytes: 256 * MiB,
  minRatio: 0.1,
  zero: "none",
  fillReserve: { kind: "ratio", ratio: 0.05 },
  shutdown: "never",
  shutdownTimeoutMs: 300_000,
  convert: { format: "qcow2", compress: false, keepBackup: false },
  maxParallelPerHost: 1,
};

export const healthyInfo: ImageInfo = {
  format: "qcow2",
  virtualSize: 20 * GiB,
  actualSize: 4 * GiB,
  snapshots: [],
  bitmaps: [],
  encrypted: false,
  dirty: false,
  corrupt: false,
  options: {
    compat: "1.1",
    clusterSize: 65536,
    lazyRefcounts: true,
    compressionType: "zlib",
    extendedL2: false,
    refcountBits: 16,
  },
};

export function bloatedDisk(overrides: Partial<DiskFacts> = {}): DiskFacts {
  return {
    path: "/images/web01.qcow2",
    stat: {
      exists: true,
      type: "file",
      device: 2049,
      inode: 77,
      size: 5 * GiB,
      allocated: 4 * GiB,
      uid: 64055,
      gid: 64055,
      mode: "600",
      mtimeSec: 1_700_000_000,
      links: 1,
    },
    info: healthyInfo,
    measure: { required: 1 * GiB, fullyAllocated: 20 * GiB, bitmaps: 0 },
    free: { availableBytes: 50 * GiB },
    temp: { exists: false },
    journal: { exists: false },
    ...overrides,
  };
}
