/**
 * listr2 as an adapter: on a terminal it draws hosts → disks → steps from the run's events. The
 * executor does not know it exists; each listr task just waits for its disk's events.
 */
import { Listr, type ListrTaskWrapper, PRESET_TIMER } from "listr2";
import { formatBytes } from "../config/units.js";
import type { RunEvent } from "../run/events.js";
import type { DiskResult } from "../run/results.js";
import type { Renderer } from "./renderer.js";

interface DiskView {
  output?: string;
  task?: { output: string };
  resolve: (result: DiskResult) => void;
  result: Promise<DiskResult>;
}

export function createListrRenderer(): Renderer {
  const views = new Map<string, DiskView>();
  /** Each guest's disk paths by `host\0guest`, to show guest-wide news on its disks' lines. */
  const disksOf = new Map<string, string[]>();
  let finished: Promise<unknown> = Promise.resolve();
  const key = (host: string, path: string) => `${host}\0${path}`;
  const show = (host: string, path: string, text: string) => {
    const view = views.get(key(host, path));
    if (!view) return;
    view.output = text;
    if (view.task) view.task.output = text;
  };
  return {
    onEvent(event: RunEvent) {
      switch (event.type) {
        case "run-start": {
          const hosts = event.plan.hosts.filter(
            (h) => !h.unreachable && h.guests.some((g) => g.disks.length),
          );
          const list = new Listr<unknown, "default", "simple">(
            hosts.map((host) => ({
              title: host.host,
              task: (_ctx: unknown, hostTask: ListrTaskWrapper<unknown, never, never>) =>
                hostTask.newListr(
                  host.guests.flatMap((guest) =>
                    guest.disks.map((disk) => {
                      let resolve: (r: DiskResult) => void = () => {};
                      const result = new Promise<DiskResult>((r) => {
                        resolve = r;
                      });
                      const view: DiskView = { resolve, result };
                      views.set(key(host.host, disk.path), view);
                      disksOf.set(key(host.host, guest.name), [
                        ...(disksOf.get(key(host.host, guest.name)) ?? []),
                        disk.path,
                      ]);
                      return {
                        title: `${guest.name} ${disk.path}`,
                        task: async (_c: unknown, task: ListrTaskWrapper<unknown, never, never>) => {
                          view.task = task;
                          if (view.output) task.output = view.output;
                          const r = await view.result;
                          const sizes =
                            r.allocatedAfter !== undefined && r.allocatedBefore !== undefined
                              ? ` (${formatBytes(r.allocatedBefore)} → ${formatBytes(r.allocatedAfter)})`
                              : "";
                          if (r.status === "failed") throw new Error(r.message);
                          if (r.status === "skipped") task.skip(`${task.title}: skipped: ${r.message}`);
                          else task.title = `${task.title}: ${r.status}${sizes}`;
                        },
                      };
                    }),
                  ),
                  { concurrent: false, exitOnError: false },
                ),
            })),
            {
              concurrent: true,
              exitOnError: false,
              renderer: "default",
              // The timer shows each host's and disk's elapsed time as it finishes.
              rendererOptions: { collapseSubtasks: false, collapseSkips: false, timer: PRESET_TIMER },
            },
          );
          finished = list.run().catch(() => undefined);
          return;
        }
        case "guest-zero-start":
          for (const path of disksOf.get(key(event.host, event.guest)) ?? [])
            show(event.host, path, "freeing blocks inside the guest");
          return;
        case "guest-zero-progress":
          for (const path of disksOf.get(key(event.host, event.guest)) ?? [])
            show(
              event.host,
              path,
              `filling ${event.mount} with zeros: ${formatBytes(event.bytes)} of ${formatBytes(event.totalBytes)}`,
            );
          return;
        case "guest-zero-end":
          // Shown in the recap; the listr tree is per disk.
          return;
        case "vm-start":
          for (const path of disksOf.get(key(event.host, event.guest)) ?? [])
            show(event.host, path, `guest: ${event.action} (${event.description})`);
          return;
        case "vm-end":
          for (const path of disksOf.get(key(event.result.host, event.result.guest)) ?? [])
            show(event.result.host, path, `guest: ${event.result.action}: ${event.result.message}`);
          return;
        case "disk-start":
          show(event.disk.host, event.disk.path, `${event.plan.action}: ${event.plan.reason}`);
          return;
        case "step-start":
          show(event.disk.host, event.disk.path, event.description);
          return;
        case "step-progress":
          show(event.disk.host, event.disk.path, `${event.step} ${event.percent.toFixed(0)}%`);
          return;
        case "step-end":
          if (!event.ok)
            show(event.disk.host, event.disk.path, `${event.step} failed: ${event.message ?? ""}`);
          return;
        case "disk-end":
          views.get(key(event.result.host, event.result.path))?.resolve(event.result);
          return;
        case "run-end":
          // Disks never started (interrupted run) must not keep listr waiting.
          for (const view of views.values()) {
            view.resolve({
              host: "",
              guest: "",
              path: "",
              action: "skip",
              status: "skipped",
              message: "not started",
              steps: [],
              durationMs: 0,
            });
          }
          return;
      }
    },
    done: async () => {
      await finished;
    },
  };
}
