/**
 * `qemu-img info --output=json`: format, sizes, and everything that makes a rewrite unsafe
 * (snapshots, backing file, encryption, dirty or corrupt flags, bitmaps).
 */

import { type CommandResult, describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

/** qcow2 creation options that `convert` would silently reset unless passed again. */
export interface Qcow2Options {
  compat?: string;
  clusterSize?: number;
  lazyRefcounts?: boolean;
  compressionType?: string;
  extendedL2?: boolean;
  refcountBits?: number;
}

export interface ImageInfo {
  format: string;
  virtualSize: number;
  /** Bytes the image file allocates on the host. */
  actualSize: number;
  backingFile?: string;
  snapshots: string[];
  bitmaps: string[];
  encrypted: boolean;
  dirty: boolean;
  corrupt: boolean;
  /** qcow2 with its data in a separate file: the data file would not follow a rename. */
  externalDataFile?: string;
  options: Qcow2Options;
}

/** The in-use probe: QEMU holds a lock on the image while a VM (or qemu-io, qemu-nbd) uses it. */
export type ImageProbe = { inUse: false; info: ImageInfo } | { inUse: true; lockMessage: string };

/**
 * Opens the image without -U so that a running QEMU's lock makes it fail: that failure is how we
 * know the image is in use, without touching the VM. Read-only open: nothing is written.
 */
export const imageProbe: Fact<{ path: string }, ImageProbe> = {
  name: "image lock probe",
  argv: ({ path }) => ["qemu-img", "info", "--output=json", path],
  parse: (result) => {
    if (result.exitCode !== 0 && isLockFailure(result.stderr)) {
      return { inUse: true, lockMessage: result.stderr.trim().split("\n")[0] ?? "locked" };
    }
    return { inUse: false, info: parseImageInfo(result) };
  },
};

/** Read-only facts of an image that may be in use: -U shares its lock and never writes. */
export const imageInfoShared: Fact<{ path: string }, ImageInfo> = {
  name: "image info",
  argv: ({ path }) => ["qemu-img", "info", "-U", "--output=json", path],
  parse: (result) => parseImageInfo(result),
};

export function isLockFailure(stderr: string): boolean {
  return /Failed to get (shared )?"\w+" lock/.test(stderr);
}

export function parseImageInfo(result: CommandResult): ImageInfo {
  if (result.exitCode !== 0) throw new Error(describeFailure(result));
  const raw = JSON.parse(result.stdout) as RawInfo;
  const data = raw["format-specific"]?.data ?? {};
  const options: Qcow2Options = {};
  if (raw.format === "qcow2") {
    if (typeof data.compat === "string") options.compat = data.compat;
    if (typeof raw["cluster-size"] === "number") options.clusterSize = raw["cluster-size"];
    if (typeof data["lazy-refcounts"] === "boolean") options.lazyRefcounts = data["lazy-refcounts"];
    if (typeof data["compression-type"] === "string") options.compressionType = data["compression-type"];
    if (typeof data["extended-l2"] === "boolean") options.extendedL2 = data["extended-l2"];
    if (typeof data["refcount-bits"] === "number") options.refcountBits = data["refcount-bits"];
  }
  const info: ImageInfo = {
    format: raw.format,
    virtualSize: raw["virtual-size"],
    actualSize: raw["actual-size"] ?? 0,
    snapshots: (raw.snapshots ?? []).map((s) => s.name),
    bitmaps: (data.bitmaps ?? []).map((b) => b.name),
    encrypted: raw.encrypted === true || data.encrypt !== undefined,
    dirty: raw["dirty-flag"] === true,
    corrupt: data.corrupt === true,
    options,
  };
  const backing = raw["full-backing-filename"] ?? raw["backing-filename"];
  if (backing) info.backingFile = backing;
  if (typeof data["data-file"] === "string") info.externalDataFile = data["data-file"];
  return info;
}

interface RawInfo {
  format: string;
  "virtual-size": number;
  "actual-size"?: number;
  "cluster-size"?: number;
  "dirty-flag"?: boolean;
  encrypted?: boolean;
  "backing-filename"?: string;
  "full-backing-filename"?: string;
  snapshots?: { name: string }[];
  "format-specific"?: {
    type: string;
    data?: {
      compat?: unknown;
      "lazy-refcounts"?: unknown;
      "compression-type"?: unknown;
      "extended-l2"?: unknown;
      "refcount-bits"?: unknown;
      corrupt?: unknown;
      encrypt?: unknown;
      "data-file"?: unknown;
      bitmaps?: { name: string }[];
    };
  };
}
