/**
 * The plan: plain, serialisable data made by a pure function from the configuration and the facts.
 * It says, per host, guest and disk, what will be done in which order and why, or why not.
 */
import type { ConvertPolicy, ReclaimPolicy, Reserve, ZeroMode } from "../config/model.js";
import type { GuestFilesystem } from "../guest/filesystems.js";
import type { FileIdentity } from "../image/journal.js";

export const PLAN_VERSION = 1;

export type StepKind =
  | "remove-leftovers"
  | "convert"
  | "flush"
  | "verify"
  | "copy-attributes"
  | "keep-backup"
  | "swap"
  | "finish-journal";

export interface Step {
  kind: StepKind;
  /** One line a person reads in the plan. */
  description: string;
}

/**
 * rewrite: convert, verify, swap.  finish: a verified rewrite from an interrupted run only needs
 * its swap.  cleanup: only leftovers of an interrupted run to remove.  ok: nothing to gain.
 * skip: refused for safety or by policy (the reason says which).
 */
export type DiskAction = "rewrite" | "finish" | "cleanup" | "ok" | "skip";

export interface ConvertSpec {
  sourceFormat: string;
  targetFormat: "qcow2";
  options: string[];
  bitmaps: boolean;
  compress: boolean;
  keepBackup: boolean;
  /** An interrupted run's conversion still runs on the host: wait for it rather than start one. */
  reattach?: boolean;
}

export interface DiskEstimate {
  /** Bytes the image file allocates on the host now. */
  allocatedBefore: number;
  /** Upper bound of what it will allocate after the rewrite. */
  allocatedAfter: number;
  reclaim: number;
  /** How the estimate was made, in words. */
  method: string;
}

/**
 * The policy values a disk was decided under (its guest's policy, overrides included), so a plan
 * shows what decided each disk (`--diff`) without the playbook at hand.
 */
export type DecidingPolicy = Pick<
  ReclaimPolicy,
  "minReclaimableBytes" | "minRatio" | "zero" | "fillReserve" | "shutdown" | "shutdownTimeoutMs"
> &
  Pick<ConvertPolicy, "compress" | "keepBackup">;

export interface DiskPlan {
  host: string;
  guest: string;
  path: string;
  action: DiskAction;
  reason: string;
  steps: Step[];
  estimate?: DiskEstimate;
  virtualSize?: number;
  convert?: ConvertSpec;
  /** The image the plan was made from; apply refuses to act on a different one. */
  identity?: FileIdentity;
  /** Leftovers of an earlier run that apply removes first. */
  leftovers: string[];
  /** The image does not exist on this host (a guest listed for several hosts lives on one). */
  absent?: boolean;
  /** For a finish: where the interrupted run meant to keep the original. */
  backup?: string;
  /**
   * Its running guest holds the image and may be shut down for it: a rewrite waits until then,
   * and apply decides again after the guest-side steps whether the shutdown is worth it.
   */
  afterShutdown?: boolean;
  /** A running process held the image's lock when planned: its size and mtime move while it runs. */
  inUse?: boolean;
  /** The policy values it was decided under; absent in a plan saved before they were recorded. */
  decidedBy?: DecidingPolicy;
}

/** A guest-side step on one filesystem: trim, fill with a bounded amount of zeros, or nothing. */
export type ZeroStep =
  | { kind: "trim"; mount: string }
  | { kind: "fill"; mount: string; mib: number }
  | { kind: "skip"; mount: string; reason: string };

/** What will be done inside a guest, before the host touches its disks. */
export interface GuestZeroPlan {
  guest: string;
  /** Absent: linux. Windows volumes are retrimmed, or zeroed with sdelete -z. */
  os?: "windows";
  /** The policy's zero mode: with auto, a trim the host does not see is followed by a fill. */
  mode: ZeroMode;
  /** The policy's fill_reserve, for a fill decided at apply time. */
  reserve: Reserve;
  filesystems: GuestFilesystem[];
  /** Fill files a lost connection left behind; removed first. */
  leftovers: string[];
  steps: ZeroStep[];
  /** The most a fill could add to the image on the host (zeros stored as data), for the room check. */
  fillBytes: number;
  /**
   * What the images may grow by on the hypervisor: its free space beside them, less a margin.
   * Fills are planned (and fills decided at apply time are sized) within it.
   */
  hostRoomBytes?: number;
  /** Why no fill is worth it (the images hold little beyond the guest's files); fills decided at apply time honour it. */
  fillNotWorth?: string;
}

/** How a running guest is stopped so its images can be rewritten, and started again after. */
export interface GuestVmPlan {
  manager: "libvirt" | "guest";
  /** libvirt's domstate word when planned; for the guest manager "running" when its image was locked. */
  state: string;
  /** The policy lets the guest be shut down (shutdown: graceful) and there is a way to do it. */
  canShutDown: boolean;
  /** The plan shuts it down: a disk it holds is worth rewriting. With a fill still to run, apply decides again. */
  shutdown: boolean;
  timeoutMs: number;
  libvirtUri?: string;
  /** guest manager: the argv that starts it again on the hypervisor, {guest} already replaced. */
  startCommand?: string[];
  /** guest manager: the argv run inside the guest to power it off. */
  poweroffCommand?: string[];
  /** An interrupted run of reclaim shut the guest down: it is started again after its disks. */
  startAfter?: boolean;
}

export interface GuestPlan {
  name: string;
  play: string;
  /** Which play (0-based, in playbook order): plays run one after another. */
  playIndex: number;
  /** Things said about the guest as a whole (guest-side steps, absence from a host). */
  notes: string[];
  /** Freeing blocks inside the guest first, when its policy asks and it could be reached. */
  zero?: GuestZeroPlan;
  /** Its VM's state and whether it is shut down for the rewrite (and started again). */
  vm?: GuestVmPlan;
  disks: DiskPlan[];
}

export interface HostPlan {
  host: string;
  /** The plays (0-based indexes) that run on this host. */
  plays: number[];
  /** Set when facts could not be gathered from the host at all. */
  unreachable?: string;
  /** What was found out about the host as a whole (guest discovery). */
  notes?: string[];
  guests: GuestPlan[];
}

export interface PlanTotals {
  disksToRewrite: number;
  disksOk: number;
  disksSkipped: number;
  estimatedReclaim: number;
}

export interface Plan {
  version: typeof PLAN_VERSION;
  createdAt: string;
  hosts: HostPlan[];
  totals: PlanTotals;
}

/** Actions that change something on the host. */
export function isChange(action: DiskAction): boolean {
  return action === "rewrite" || action === "finish" || action === "cleanup";
}
