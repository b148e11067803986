/**
 * Read → plan: opens one transport per host, gathers every disk's facts and assembles the plan.
 * Nothing here changes anything on any host.
 */
import type { Guest, Play, ReclaimPolicy } from "../config/model.js";
import { TransportError, UsageError } from "../errors.js";
import type { Inventory, InventoryHost } from "../inventory/model.js";
import { selectHosts } from "../inventory/pattern.js";
import { buildPlan, type GuestOnHost, type HostEntry } from "../plan/build.js";
import type { GuestZeroPlan, Plan } from "../plan/plan.js";
import { checkRewrites } from "../tasks/rewrite-image.js";
import { checkZeroGuest } from "../tasks/zero-guest.js";
import type { Transport } from "../transport/transport.js";
import { mapLimit } from "./concurrency.js";
import { policyKey } from "./execute.js";
import { openGuestTransport } from "./guest-transport.js";
import { openTransport, type SshContext } from "./transports.js";

export interface PreparedRun {
  plan: Plan;
  policies: Map<string, ReclaimPolicy>;
  transports: Map<string, Transport>;
  /** Connections to guests whose blocks are freed first, by `host\0guest`. */
  guestTransports: Map<string, Transport>;
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
  const guestTransports = new Map<string, Transport>();
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
        const guests = await planGuests(host, mine, opened.transport, {
          policies,
          ssh: options.ssh,
          guestTransports,
        });
        return { host: host.name, plays, guests };
      } catch (error) {
        // The connection failed under the fact gathering: this host is unreachable, the others go on.
        if (!(error instanceof TransportError)) throw error;
        transports.delete(host.name);
        await opened.transport.close();
        return { host: host.name, plays, unreachable: error.message, guests: [] };
      }
    });
    return {
      plan: buildPlan(entries, (options.now ?? (() => new Date()))()),
      policies,
      transports,
      guestTransports,
    };
  } catch (error) {
    await closePrepared({ transports, guestTransports });
    throw error;
  }
}

/** Every disk of every guest on one host, its facts gathered together (a few round trips). */
interface GuestPlanning {
  policies: Map<string, ReclaimPolicy>;
  ssh: SshContext;
  guestTransports: Map<string, Transport>;
}

/** Every disk of every guest on one host, its facts gathered together (a few round trips). */
async function planGuests(
  host: InventoryHost,
  assignments: readonly Assignment[],
  transport: Transport,
  planning: GuestPlanning,
): Promise<GuestOnHost[]> {
  const targets = assignments.flatMap(({ guest }) =>
    guest.disks.map((disk) => ({
      host: host.name,
      guest: guest.name,
      path: disk.path,
      policy: guest.policy,
    })),
  );
  for (const t of targets) planning.policies.set(policyKey(t.host, t.path), t.policy);
  const plans = await checkRewrites(transport, targets);
  let next = 0;
  const guests = assignments.map(({ play, playIndex, guest, pinned }): GuestOnHost => {
    const disks = plans.slice(next, next + guest.disks.length);
    next += guest.disks.length;
    return { host: host.name, guest: guest.name, play: play.name, playIndex, pinned, notes: [], disks };
  });
  // Guest-side steps only where the guest's disks are: a guest without `host:` lives on one host.
  await Promise.all(
    guests.map((planned, i) => {
      const guest = (assignments[i] as Assignment).guest;
      if (guest.policy.zero === "none" || planned.disks.every((d) => d.absent)) return undefined;
      return planZero(host.name, guest, transport, planning).then((zero) => {
        if ("plan" in zero) planned.zero = zero.plan;
        else planned.notes.push(zero.note);
      });
    }),
  );
  return guests;
}

/** Connects to the guest (through its hypervisor) and decides what to free inside it. */
async function planZero(
  host: string,
  guest: Guest,
  hypervisor: Transport,
  planning: GuestPlanning,
): Promise<{ plan: GuestZeroPlan } | { note: string }> {
  const skipped = (why: string) => ({
    note: `guest-side steps (zero: ${guest.policy.zero}) skipped: ${why}; only the host-side rewrite runs`,
  });
  if (guest.os !== "linux") return skipped("Windows guests are not reached by this version yet");
  if (!guest.ssh) return skipped("the guest has no ssh: settings");
  const key = `${host}\0${guest.name}`;
  const existing = planning.guestTransports.get(key);
  const opened = existing
    ? { transport: existing }
    : await openGuestTransport(guest, hypervisor, planning.ssh);
  if ("unreachable" in opened) return skipped(opened.unreachable);
  planning.guestTransports.set(key, opened.transport);
  try {
    return {
      plan: await checkZeroGuest(opened.transport, guest.name, guest.policy.zero, guest.policy.fillReserve),
    };
  } catch (error) {
    return skipped(`cannot read the guest's filesystems: ${(error as Error).message}`);
  }
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

/** Closes every connection a prepared run opened: guests first, then their hypervisors. */
export async function closePrepared(
  prepared: Pick<PreparedRun, "transports" | "guestTransports">,
): Promise<void> {
  await closeAll(prepared.guestTransports);
  await closeAll(prepared.transports);
}

export async function closeAll(transports: ReadonlyMap<string, Transport>): Promise<void> {
  await Promise.allSettled([...transports.values()].map((t) => t.close()));
}
