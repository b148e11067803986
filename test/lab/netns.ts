/**
 * Network namespaces for the cases loopback cannot show: a host reachable only through a jump
 * host (ProxyJump), and an address whose connection fails at once.
 *
 *   root ns  rcl-N-rj 10.213.(2s).1/30 ── veth ── rcl-N-jr 10.213.(2s).2    ns rcl-N-jump
 *   ns rcl-N-jump  rcl-N-ji 10.213.(2s+1).1/30 ── veth ── rcl-N-ij 10.213.(2s+1).2   ns rcl-N-inner
 *
 * `s` is a free slot (0…63) chosen under a machine-wide lock, so several labs can live at once.
 * The root namespace gets an `unreachable 10.213.0.0/16` route: only the root↔jump /30 is more
 * specific, so the inner host and every other 10.213.x.y fail at once with EHOSTUNREACH and no
 * packet for them ever leaves the machine. The jump namespace does not forward, and no
 * namespace has a default route. The route is removed when the last lab on the machine goes.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { registerCleanup } from "./cleanup.js";
import { withHostLock } from "./hostlock.js";
import { type ProcInfo, procInfo, terminate } from "./proc.js";

export const IP = existsSync("/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip";
export const LAB_NET = "10.213.0.0/16";
/** An address under the `unreachable` route: connecting fails at once with EHOSTUNREACH. */
export const UNREACHABLE_ADDRESS = "10.213.255.1";

export interface NetnsLab {
  name: string;
  slot: number;
  /** `rcl-<name>-jump`: reachable from the root namespace. */
  jumpNs: string;
  /** `rcl-<name>-inner`: reachable only from the jump namespace. */
  innerNs: string;
  /** The root namespace's end of the root↔jump link. */
  rootAddress: string;
  /** The jump host as the root namespace (the client) sees it. */
  jumpAddress: string;
  /** The jump host's end of the jump↔inner link (the source address the inner host sees). */
  jumpInnerSideAddress: string;
  /** The inner host: routable from the jump namespace only. */
  innerAddress: string;
  /** Blackholed from the root namespace (EHOSTUNREACH at once). */
  unreachableAddress: string;
  /** Runs a program inside one of this lab's namespaces and returns its stdout. */
  exec(ns: string, file: string, args: readonly string[]): string;
  /** Kills whatever still runs in the namespaces, deletes them and the veths. Idempotent. */
  destroy(): Promise<void>;
}

function ip(args: readonly string[]): string {
  return execFileSync(IP, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
}

function ipQuiet(args: readonly string[]): void {
  try {
    ip(args);
  } catch {
    // Already gone.
  }
}

function namespaces(): string[] {
  return ip(["netns", "list"])
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter(Boolean);
}

function pidsIn(ns: string): ProcInfo[] {
  let out = "";
  try {
    out = ip(["netns", "pids", ns]);
  } catch {
    return [];
  }
  return out
    .split(/\s+/)
    .filter(Boolean)
    .map((p) => procInfo(Number(p)))
    .filter((p): p is ProcInfo => p !== undefined && p.state !== "Z");
}

/** Root-namespace veth ends of all labs on this machine. */
function labLinks(): string[] {
  return ip(["-o", "link", "show"])
    .split("\n")
    .map((l) => /^\d+:\s+(rcl-[a-z0-9]+-rj)[@:]/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined);
}

function usedSlots(): Set<number> {
  const used = new Set<number>();
  for (const m of ip(["-o", "-4", "addr", "show"]).matchAll(/inet 10\.213\.(\d+)\.1\/30/g)) {
    used.add(Math.floor(Number(m[1]) / 2));
  }
  return used;
}

function removeSafetyRouteIfLast(): void {
  if (labLinks().length === 0) ipQuiet(["route", "del", "unreachable", LAB_NET]);
}

function deleteLab(name: string, jumpNs: string, innerNs: string): void {
  ipQuiet(["link", "del", `rcl-${name}-rj`]);
  const present = namespaces();
  for (const ns of [innerNs, jumpNs]) if (present.includes(ns)) ipQuiet(["netns", "del", ns]);
}

export async function createNetnsLab(name: string): Promise<NetnsLab> {
  if (!/^[a-z0-9]{1,8}$/.test(name)) {
    throw new Error(`netns lab name must be 1-8 of [a-z0-9] (interface names are short): ${name}`);
  }
  const jumpNs = `rcl-${name}-jump`;
  const innerNs = `rcl-${name}-inner`;
  const rj = `rcl-${name}-rj`;
  const jr = `rcl-${name}-jr`;
  const ji = `rcl-${name}-ji`;
  const ij = `rcl-${name}-ij`;

  // Leftovers of an earlier, killed run with the same name.
  const stale = [...pidsIn(jumpNs), ...pidsIn(innerNs)];
  if (stale.length > 0) await terminate(stale, 1000);

  // Registered before anything exists, so even a half-made lab goes if this process dies.
  const unregister = registerCleanup({ kind: "netns", jumpNs, innerNs, rootLink: rj });
  const slot = await withHostLock(() => {
    deleteLab(name, jumpNs, innerNs);
    const used = usedSlots();
    let s = 0;
    while (used.has(s) && s < 64) s++;
    if (s >= 64) throw new Error("no free 10.213.x.0/30 slot for another netns lab");
    const a = 2 * s;
    const b = 2 * s + 1;
    try {
      ip(["netns", "add", jumpNs]);
      ip(["netns", "add", innerNs]);
      ip(["link", "add", rj, "type", "veth", "peer", "name", jr, "netns", jumpNs]);
      ip(["-n", jumpNs, "link", "add", ji, "type", "veth", "peer", "name", ij, "netns", innerNs]);
      // The safety route goes in as soon as a lab link exists (and before any address is up).
      ip(["route", "replace", "unreachable", LAB_NET]);
      ip(["addr", "add", `10.213.${a}.1/30`, "dev", rj]);
      ip(["link", "set", rj, "up"]);
      for (const ns of [jumpNs, innerNs]) {
        ip(["-n", ns, "link", "set", "lo", "up"]);
        execFileSync(IP, ["netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0"], {
          timeout: 10_000,
        });
      }
      ip(["-n", jumpNs, "addr", "add", `10.213.${a}.2/30`, "dev", jr]);
      ip(["-n", jumpNs, "link", "set", jr, "up"]);
      ip(["-n", jumpNs, "addr", "add", `10.213.${b}.1/30`, "dev", ji]);
      ip(["-n", jumpNs, "link", "set", ji, "up"]);
      ip(["-n", innerNs, "addr", "add", `10.213.${b}.2/30`, "dev", ij]);
      ip(["-n", innerNs, "link", "set", ij, "up"]);
    } catch (e) {
      deleteLab(name, jumpNs, innerNs);
      removeSafetyRouteIfLast();
      throw e;
    }
    return s;
  }).catch((e: unknown) => {
    unregister();
    throw e;
  });

  let destroyed: Promise<void> | undefined;
  const lab: NetnsLab = {
    name,
    slot,
    jumpNs,
    innerNs,
    rootAddress: `10.213.${2 * slot}.1`,
    jumpAddress: `10.213.${2 * slot}.2`,
    jumpInnerSideAddress: `10.213.${2 * slot + 1}.1`,
    innerAddress: `10.213.${2 * slot + 1}.2`,
    unreachableAddress: UNREACHABLE_ADDRESS,
    exec(ns, file, args) {
      if (ns !== jumpNs && ns !== innerNs) throw new Error(`${ns} is not a namespace of lab ${name}`);
      return execFileSync(IP, ["netns", "exec", ns, file, ...args], { encoding: "utf8", timeout: 30_000 });
    },
    destroy() {
      destroyed ??= (async () => {
        const left = [...pidsIn(jumpNs), ...pidsIn(innerNs)];
        if (left.length > 0) await terminate(left, 1000);
        await withHostLock(() => {
          deleteLab(name, jumpNs, innerNs);
          removeSafetyRouteIfLast();
        });
        unregister();
      })();
      return destroyed;
    },
  };
  return lab;
}
