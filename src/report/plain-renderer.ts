/**
 * Plain timestamped lines for CI logs and pipes: one per step start and end, progress at most
 * every `progressEveryMs`, nothing that needs a terminal. Verbose: every event, each step with its
 * description, every progress report.
 */
import type { Writable } from "node:stream";
import { formatBytes } from "../config/units.js";
import type { RunEvent } from "../run/events.js";
import { formatTotals } from "./plan-text.js";
import type { Renderer } from "./renderer.js";

export type PlainLevel = "normal" | "verbose";

export interface PlainRendererOptions {
  level?: PlainLevel;
  /** At the normal level, the least time between two progress lines of one step. */
  progressEveryMs?: number;
  clock?: () => Date;
}

export function createPlainRenderer(out: Writable, options: PlainRendererOptions = {}): Renderer {
  const { level = "normal", progressEveryMs = 10_000, clock = () => new Date() } = options;
  const lastProgress = new Map<string, number>();
  return {
    onEvent(event: RunEvent) {
      const progressKey =
        event.type === "step-progress"
          ? `${event.disk.host}\0${event.disk.path}\0${event.step}`
          : event.type === "guest-zero-progress"
            ? `${event.host}\0${event.guest}\0${event.mount}`
            : undefined;
      if (progressKey !== undefined && level === "normal") {
        const key = progressKey;
        const now = clock().getTime();
        if (now - (lastProgress.get(key) ?? 0) < progressEveryMs) return;
        lastProgress.set(key, now);
      }
      const text = plainLine(event, level);
      if (text !== undefined) out.write(`[${clock().toISOString().slice(11, 19)}] ${text}\n`);
    },
    done: async () => {},
  };
}

/**
 * The line an event is shown as at a level, without its timestamp; undefined when the level does
 * not show it. Progress is throttled by the renderer, not here.
 */
export function plainLine(event: RunEvent, level: PlainLevel): string | undefined {
  const verbose = level === "verbose";
  switch (event.type) {
    case "run-start":
      return verbose ? `run started: ${formatTotals(event.plan)}` : undefined;
    case "run-end":
      return verbose ? `run ended in ${(event.result.durationMs / 1000).toFixed(1)} s` : undefined;
    case "guest-zero-start":
      return `${event.host} ${event.guest}: freeing blocks inside the guest (${event.plan.steps.map((st) => `${st.kind} ${st.mount}`).join(", ")})`;
    case "guest-zero-end":
      return `${event.result.host} ${event.result.guest}: guest ${event.result.ok ? "done" : "FAILED"}: ${event.result.message}`;
    case "vm-start":
      return `${event.host} ${event.guest}: ${event.action} (${event.description})`;
    case "vm-end":
      return `${event.result.host} ${event.result.guest}: ${event.result.action} ${event.result.ok ? "done" : "FAILED"}: ${event.result.message}`;
    case "disk-start":
      return `${event.disk.host} ${event.disk.guest} ${event.disk.path}: ${event.plan.action} (${event.plan.reason})`;
    case "step-start":
      return `${event.disk.host} ${event.disk.path}: ${event.step} started${verbose ? `: ${event.description}` : ""}`;
    case "step-progress":
      return `${event.disk.host} ${event.disk.path}: ${event.step} ${event.percent.toFixed(0)}%`;
    case "guest-zero-progress":
      return `${event.host} ${event.guest}: filling ${event.mount}: ${formatBytes(event.bytes)} of ${formatBytes(event.totalBytes)} (${((event.bytes * 100) / Math.max(1, event.totalBytes)).toFixed(0)}%)`;
    case "step-end":
      return `${event.disk.host} ${event.disk.path}: ${event.step} ${event.ok ? "done" : "FAILED"} in ${(event.durationMs / 1000).toFixed(1)} s${event.message ? `: ${event.message}` : ""}`;
    case "disk-end":
      return `${event.result.host} ${event.result.guest} ${event.result.path}: ${event.result.status}: ${event.result.message}`;
    default:
      // A new kind of event must be given its line here: the compiler says so.
      return event satisfies never;
  }
}
