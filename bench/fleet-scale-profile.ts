/**
 * Reads a V8 `.cpuprofile` (what `node --cpu-prof` writes) and says where the time went: self time
 * per function, per package, and the inclusive time of reclaim's own functions (which of them the
 * time is spent under, ssh2 and Node's internals included).
 */
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Entry {
  /** `function file:line`, or a V8 pseudo-frame such as `(idle)` or `(garbage collector)`. */
  name: string;
  /** reclaim, a package (ssh2, ajv…), node (Node's own JavaScript), native, gc, idle or v8. */
  category: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  self: Entry[];
  categories: Entry[];
  /** reclaim's functions by time spent in them and everything they called. */
  reclaimInclusive: Entry[];
}

/** Where a frame's code comes from; `root` is the compiled project (its dist/). */
function categoryOf(frame: CallFrame, root: string): string {
  const { url, functionName } = frame;
  if (url === "") {
    if (functionName === "(idle)") return "idle";
    if (functionName === "(garbage collector)") return "gc";
    return functionName.startsWith("(") ? "v8" : "native";
  }
  if (url.startsWith("node:")) return "node";
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
  if (pkg) return pkg;
  if (url.includes(`${root}dist/`)) return "reclaim";
  return "other";
}

function nameOf(frame: CallFrame, root: string): string {
  if (frame.url === "") return frame.functionName || "(native)";
  const file = frame.url
    .replace(/^file:\/\//, "")
    .replace(`${root}dist/`, "")
    .replace(/^.*\/node_modules\//, "");
  return `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
}

/** The top `top` entries of each list; shares are of the profile's whole sampled time. */
export function summarizeCpuProfile(path: string, root: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // A sample stands for the interval up to the next one (as DevTools counts it).
  const self = new Map<string, { category: string; us: number }>();
  const inclusive = new Map<string, number>();
  let totalUs = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const node = byId.get(id);
    if (!node || us <= 0) return;
    totalUs += us;
    const name = nameOf(node.callFrame, root);
    const entry = self.get(name) ?? { category: categoryOf(node.callFrame, root), us: 0 };
    entry.us += us;
    self.set(name, entry);
    // Each reclaim function on the stack once, however deep its recursion.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame || categoryOf(frame, root) !== "reclaim") continue;
      const key = nameOf(frame, root);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  });

  const entry = (name: string, category: string, us: number): Entry => ({
    name,
    category,
    ms: us / 1000,
    share: totalUs ? us / totalUs : 0,
  });
  const categories = new Map<string, number>();
  for (const { category, us } of self.values())
    categories.set(category, (categories.get(category) ?? 0) + us);
  const byTime = (a: Entry, b: Entry) => b.ms - a.ms;
  return {
    totalMs: totalUs / 1000,
    self: [...self]
      .map(([name, { category, us }]) => entry(name, category, us))
      .sort(byTime)
      .slice(0, top),
    categories: [...categories]
      .map(([name, us]) => entry(name, name, us))
      .sort(byTime)
      .slice(0, top),
    reclaimInclusive: [...inclusive]
      .map(([name, us]) => entry(name, "reclaim", us))
      .sort(byTime)
      .slice(0, top),
  };
}
