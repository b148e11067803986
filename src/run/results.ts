/** What a run did, as data: renderers, reports and the exit code are all made from this. */
import type { DiskAction, DiskEstimate, StepKind } from "../plan/plan.js";

/** Ansible's vocabulary: ok (nothing to do), changed, skipped (refused or by policy), failed. */
export type DiskStatus = "ok" | "changed" | "skipped" | "failed";

export interface StepResult {
  kind: StepKind;
  ok: boolean;
  durationMs: number;
  message?: string;
}

export interface DiskResult {
  host: string;
  guest: string;
  path: string;
  action: DiskAction;
  status: DiskStatus;
  message: string;
  /** Bytes the image allocated on the host before and after (measured, not estimated). */
  allocatedBefore?: number;
  allocatedAfter?: number;
  estimate?: DiskEstimate;
  steps: StepResult[];
  durationMs: number;
  /** The connection was lost while the conversion continued, detached, on the host. */
  detached?: boolean;
}

/** What freeing blocks did on one filesystem inside a guest. */
export interface ZeroOutcome {
  mount: string;
  kind: "trim" | "fill" | "skip";
  ok: boolean;
  /** Bytes trimmed, or zeros written. */
  bytes: number;
  message: string;
}

export interface GuestZeroResult {
  host: string;
  guest: string;
  ok: boolean;
  message: string;
  outcomes: ZeroOutcome[];
  durationMs: number;
}

/** Shutting a guest down for its rewrite, or starting it again after. */
export interface VmActionResult {
  host: string;
  guest: string;
  action: "shutdown" | "start";
  manager: "libvirt" | "guest";
  ok: boolean;
  message: string;
  /** Nothing needed doing: the recap leaves it out. */
  idle?: boolean;
  durationMs: number;
}

export interface HostRecap {
  host: string;
  ok: number;
  changed: number;
  skipped: number;
  failed: number;
  unreachable: boolean;
  unreachableReason?: string;
  allocatedBefore: number;
  allocatedAfter: number;
  reclaimed: number;
}

export interface RunResult {
  /** Guest-side steps, each before its guest's disks. */
  guests: GuestZeroResult[];
  /** Guests shut down for their rewrites and started again, in order. */
  vms: VmActionResult[];
  disks: DiskResult[];
  hosts: HostRecap[];
  durationMs: number;
}
