/**
 * Plain timestamped lines for CI logs and pipes: one per step start and end, progress at most
 * every `progressEveryMs`, nothing that needs a terminal.
 */
import type { Writable } from "node:stream";
import type { RunEvent } from "../run/events.js";
import type { Renderer } from "./renderer.js";

export function createPlainRenderer(
  out: Writable,
  progressEveryMs = 10_000,
  clock: () => Date = () => new Date(),
): Renderer {
  const lastProgress = new Map<string, number>();
  const line = (text: string) => out.write(`[${clock().toISOString().slice(11, 19)}] ${text}\n`);
  return {
    onEvent(event: RunEvent) {
      switch (event.type) {
        case "run-start":
        case "run-end":
          return;
        case "guest-zero-start":
          line(
            `${event.host} ${event.guest}: freeing blocks inside the guest (${event.plan.steps.map((st) => `${st.kind} ${st.mount}`).join(", ")})`,
          );
          return;
        case "guest-zero-end":
          line(
            `${event.result.host} ${event.result.guest}: guest ${event.result.ok ? "done" : "FAILED"}: ${event.result.message}`,
          );
          return;
        case "vm-start":
          line(`${event.host} ${event.guest}: ${event.action} (${event.description})`);
          return;
        case "vm-end":
          line(
            `${event.result.host} ${event.result.guest}: ${event.result.action} ${event.result.ok ? "done" : "FAILED"}: ${event.result.message}`,
          );
          return;
        case "disk-start":
          line(
            `${event.disk.host} ${event.disk.guest} ${event.disk.path}: ${event.plan.action} (${event.plan.reason})`,
          );
          return;
        case "step-start":
          line(`${event.disk.host} ${event.disk.path}: ${event.step} started`);
          return;
        case "step-progress": {
          const key = `${event.disk.host}\0${event.disk.path}\0${event.step}`;
          const now = clock().getTime();
          if (now - (lastProgress.get(key) ?? 0) < progressEveryMs) return;
          lastProgress.set(key, now);
          line(`${event.disk.host} ${event.disk.path}: ${event.step} ${event.percent.toFixed(0)}%`);
          return;
        }
        case "step-end":
          line(
            `${event.disk.host} ${event.disk.path}: ${event.step} ${event.ok ? "done" : "FAILED"} in ${(event.durationMs / 1000).toFixed(1)} s${event.message ? `: ${event.message}` : ""}`,
          );
          return;
        case "disk-end":
          line(
            `${event.result.host} ${event.result.guest} ${event.result.path}: ${event.result.status}: ${event.result.message}`,
          );
          return;
      }
    },
    done: async () => {},
  };
}
