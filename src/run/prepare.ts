/**
 * Read → plan: opens one transport per host, gathers every disk's facts and assembles the plan.
 * Nothing here changes anything on any host.
 */
import type { Guest, Play, ReclaimPolicy } from "../config/model.js";
import { TransportError, UsageError } from "../errors.js";
import type { Inventory, InventoryHost } from "../inventory/model.js";
import { selectHosts } from "../inventory/pattern.js";
import { buildPlan, type GuestOnHost, type HostEntry } from "../plan/build.js";
import type { Plan } from "../plan/plan.js";
import { checkRewrites } from "../tasks/rewrite-image.js";
import type { Transport } from "../transport/transport.js";
import { mapLimit } from "./concurrency.js";
import { policyKey } from "./execute.js";
import { openTransport, type SshContext } from "./transports.js";

export interface PreparedRun {
  plan: Plan;
  policies: Map<string, ReclaimPolicy>;
  transports: Map<string, Transport>;
}

export interface PrepareOptions {
  inventory: Inventory;
  plays: readonly Play[];
  forks: number;
  ssh: SshContext;
  /** Ansible's --limit: only hosts this pattern also selects. */
  limit?: string;
  now?: () => Date;
}

interface Assignment {
  play: Play;
  playIndex: number;
  guest: Guest;
  pinned: boolean;
}

export async function preparePlan(options: PrepareOptions): Promise<PreparedRun> {
  const assignments = assignGuests(options.inventory, options.plays, options.limit);
  const hosts = options.inventory.hosts.filter((h) => assignments.has(h.name));
  const policies = new Map<string, ReclaimPolicy>();
  const transports = new Map<string, Transport>();
  try {
    const entries = await mapLimit(hosts, options.forks, async (host): Promise<HostEntry> => {
      const mine = assignments.get(host.name) ?? [];
      const plays = [...new Set(mine.map((a) => a.playIndex))];
      // A play's `become` applies to the hosts it runs on, as the inventory's ansible_become does.
      const become = host.become || mine.some((a) => a.play.become);
      const opened = await openTransport({ ...host, become }, options.ssh);
      if ("unreachable" in opened)
        return { host: host.name, plays, unreachable: opened.unreachable, guests: [] };
      transports.set(host.name, opened.transport);
      try {
        const guests = await planGuests(host, mine, opened.transport, policies);
        return { host: host.name, plays, guests };
      } catch (error) {
        // The connection failed under the fact gathering: this host is unreachable, the others go on.
        if (!(error instanceof TransportError)) throw error;
        transports.delete(host.name);
        await opened.transport.close();
        return { host: host.name, plays, unreachable: error.message, guests: [] };
      }
    });
    return { plan: buildPlan(entries, (options.now ?? (() => new Date()))()), policies, transports };
  } catch (error) {
    await closeAll(transports);
    throw error;
  }
}

/** Every disk of every guest on one host, its facts gathered together (a few round trips). */
async function planGuests(
  host: InventoryHost,
  assignments: readonly Assignment[],
  transport: Transport,
  policies: Map<string, ReclaimPolicy>,
): Promise<GuestOnHost[]> {
  const targets = assignments.flatMap(({ guest }) =>
    guest.disks.map((disk) => ({
      host: host.name,
      guest: guest.name,
      path: disk.path,
      policy: guest.policy,
    })),
  );
  for (const t of targets) policies.set(policyKey(t.host, t.path), t.policy);
  const plans = await checkRewrites(transport, targets);
  let next = 0;
  return assignments.map(({ play, playIndex, guest, pinned }) => {
    const disks = plans.slice(next, next + guest.disks.length);
    next += guest.disks.length;
    const notes =
      guest.policy.zero === "none"
        ? []
        : [
            `zero: ${guest.policy.zero} asks for freeing blocks inside the guest first; this version does not reach into guests yet, so only the host-side rewrite runs`,
          ];
    return { host: host.name, guest: guest.name, play: play.name, playIndex, pinned, notes, disks };
  });
}

/** Which guests each host is asked about, in playbook order. */
function assignGuests(
  inventory: Inventory,
  plays: readonly Play[],
  limit: string | undefined,
): Map<string, Assignment[]> {
  const limited = limit === undefined ? undefined : selectHosts(inventory, limit);
  if (limited && "error" in limited) throw new UsageError(`--limit: ${limited.error}`);
  const out = new Map<string, Assignment[]>();
  plays.forEach((play, playIndex) => {
    const selected = selectHosts(inventory, play.hosts);
    const names = ("hosts" in selected ? selected.hosts : []).filter(
      (n) => !limited || limited.hosts.includes(n),
    );
    for (const guest of play.guests) {
      const targets = guest.host !== undefined ? names.filter((n) => n === guest.host) : names;
      for (const name of targets) {
        const list = out.get(name) ?? [];
        list.push({ play, playIndex, guest, pinned: guest.host !== undefined || names.length === 1 });
        out.set(name, list);
      }
    }
  });
  return out;
}

export async function closeAll(transports: ReadonlyMap<string, Transport>): Promise<void> {
  await Promise.allSettled([...transports.values()].map((t) => t.close()));
}
