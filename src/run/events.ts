/**
 * What the executor tells the world while it works. Renderers (listr2, plain lines, JSON) are
 * adapters that consume these; the core never prints.
 */
import type { DiskPlan, GuestZeroPlan, Plan, StepKind } from "../plan/plan.js";
import type { DiskResult, GuestZeroResult, RunResult, VmActionResult } from "./results.js";

export interface DiskRef {
  host: string;
  guest: string;
  path: string;
}

export type RunEvent =
  | { type: "run-start"; plan: Plan }
  | { type: "guest-zero-start"; host: string; guest: string; plan: GuestZeroPlan }
  | {
      type: "guest-zero-progress";
      host: string;
      guest: string;
      mount: string;
      /** Zeros written so far, and what the fill will write in all. */
      bytes: number;
      totalBytes: number;
    }
  | { type: "guest-zero-end"; result: GuestZeroResult }
  | { type: "vm-start"; host: string; guest: string; action: VmActionResult["action"]; description: string }
  | { type: "vm-end"; result: VmActionResult }
  | { type: "disk-start"; disk: DiskRef; plan: DiskPlan }
  | { type: "step-start"; disk: DiskRef; step: StepKind; description: string }
  | { type: "step-progress"; disk: DiskRef; step: StepKind; percent: number }
  | { type: "step-end"; disk: DiskRef; step: StepKind; ok: boolean; durationMs: number; message?: string }
  | { type: "disk-end"; result: DiskResult }
  | { type: "run-end"; result: RunResult };

export type EmitEvent = (event: RunEvent) => void;
