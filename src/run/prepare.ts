/**
 * Read → plan: opens one transport per host, gathers every disk's facts and assembles the plan.
 * Nothing here changes anything on any host.
 */
import type { Guest, Play, ReclaimPolicy } from "../config/model.js";
import { TransportError, UsageError } from "../errors.js";
import { type DiskFacts, gatherDisksFacts } from "../facts/disk.js";
import type { Inventory, InventoryHost } from "../inventory/model.js";
import { selectHosts } from "../inventory/pattern.js";
import { buildPlan, type GuestOnHost, type HostEntry } from "../plan/build.js";
import { decideDisk, freeSpaceMargin } from "../plan/decide-disk.js";
import { decideVm, type LibvirtFacts, type VmDecision } from "../plan/decide-vm.js";
import { type DiskPlan, type GuestZeroPlan, isChange, type Plan } from "../plan/plan.js";
import { checkZeroGuest, type HostSide } from "../tasks/zero-guest.js";
import { createAgentTransport } from "../transport/agent.js";
import type { Transport } from "../transport/transport.js";
import { discoverGuests } from "../vm/discover.js";
import { gatherLibvirtFacts } from "../vm/libvirt.js";
import { mapLimit } from "./concurrency.js";
import { policyKey } from "./execute.js";
import { openGuestTransport } from "./guest-transport.js";
import { inShard, type Shard } from "./shard.js";
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
  /** --shard K/N: only the guests that fall in this share. */
  shard?: Shard;
  now?: () => Date;
}

interface Assignment {
  play: Play;
  playIndex: number;
  guest: Guest;
  pinned: boolean;
}

/** A play that discovers its guests on the host, once connected. */
interface Discovery {
  play: Play;
  playIndex: number;
  discover: NonNullable<Play["discover"]>;
}

export async function preparePlan(options: PrepareOptions): Promise<PreparedRun> {
  const assignments = assignGuests(options.inventory, options.plays, options.limit, options.shard);
  const hosts = options.inventory.hosts.filter((h) => assignments.has(h.name));
  const policies = new Map<string, ReclaimPolicy>();
  const transports = new Map<string, Transport>();
  const guestTransports = new Map<string, Transport>();
  try {
    const entries = await mapLimit(hosts, options.forks, async (host): Promise<HostEntry> => {
      const given = assignments.get(host.name) ?? [];
      const plays = [...new Set(given.map((a) => a.playIndex))];
      const mine = given.filter((a): a is Assignment => "guest" in a);
      // A play's `become` applies to the hosts it runs on, as the inventory's ansible_become does.
      const become = host.become || given.some((a) => a.play.become);
      const opened = await openTransport({ ...host, become }, options.ssh);
      if ("unreachable" in opened)
        return { host: host.name, plays, unreachable: opened.unreachable, guests: [] };
      transports.set(host.name, opened.transport);
      try {
        const notes: string[] = [];
        for (const d of given.filter((a): a is Discovery => "discover" in a)) {
          const found = await discoverGuests(opened.transport, d.discover, d.play.policy);
          notes.push(...found.notes.map((n) => `play '${d.play.name}': ${n}`));
          mine.push(
            ...found.guests
              .filter((guest) => inShard(options.shard, host.name, guest.name))
              .map((guest) => ({ play: d.play, playIndex: d.playIndex, guest, pinned: true })),
          );
        }
        mine.sort((a, b) => a.playIndex - b.playIndex);
        const guests = await planGuests(host, mine, opened.transport, {
          policies,
          ssh: options.ssh,
          guestTransports,
        });
        return { host: host.name, plays, guests, ...(notes.length ? { notes } : {}) };
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

/**
 * Every guest on one host: its disks' facts and libvirt's view of its VM, gathered together (a few
 * round trips), then the VM, disk and guest-side decisions.
 */
async function planGuests(
  host: InventoryHost,
  assignments: readonly Assignment[],
  transport: Transport,
  planning: GuestPlanning,
): Promise<GuestOnHost[]> {
  const paths = assignments.flatMap(({ guest }) => guest.disks.map((disk) => disk.path));
  const asked = assignments.filter(({ guest }) => guest.vm.manager !== "guest");
  const [facts, libvirt] = await Promise.all([
    gatherDisksFacts(transport, paths),
    gatherLibvirtFacts(
      transport,
      asked.map(({ guest }) => ({ uri: guest.vm.libvirtUri, name: guest.name })),
    ),
  ]);
  const libvirtOf = new Map<Assignment, LibvirtFacts>(asked.map((a, i) => [a, libvirt[i] as LibvirtFacts]));
  let next = 0;
  const planned = assignments.map((assignment) => {
    const { play, playIndex, guest, pinned } = assignment;
    const mine = facts.slice(next, next + guest.disks.length);
    next += guest.disks.length;
    const vm = decideVm(guest, libvirtOf.get(assignment), mine);
    const disks = mine.map((f) => {
      planning.policies.set(policyKey(host.name, f.path), guest.policy);
      return decideDisk({
        host: host.name,
        guest: guest.name,
        policy: guest.policy,
        facts: f,
        guestStops: vm.stopsFor.has(f.path),
        ...(vm.whyRunning ? { whyRunning: vm.whyRunning } : {}),
      });
    });
    if (vm.vm) vm.vm.shutdown = disks.some((d) => d.afterShutdown && d.action === "rewrite");
    const entry: GuestOnHost = {
      host: host.name,
      guest: guest.name,
      play: play.name,
      playIndex,
      pinned,
      notes: [...vm.notes],
      disks,
      ...(vm.vm ? { vm: vm.vm } : {}),
    };
    return { entry, guest, vm, facts: mine };
  });
  // Guest-side steps only where the guest's disks are: a guest without `host:` lives on one host.
  await Promise.all(
    planned.map(async ({ entry, guest, vm, facts: mine }) => {
      if (guest.policy.zero !== "none" && !entry.disks.every((d) => d.absent)) {
        if (vm.shutOff)
          entry.notes.push(`guest-side steps (zero: ${guest.policy.zero}) skipped: ${vm.shutOff}`);
        else {
          const side = hostSide(vm, mine, entry.disks, guest.policy);
          const zero = await planZero(host.name, guest, transport, planning, side);
          if ("plan" in zero) entry.zero = zero.plan;
          else entry.notes.push(zero.note);
        }
      }
      // The guest manager powers the guest off from inside: it needs the connection too.
      if (entry.vm?.manager === "guest" && entry.vm.canShutDown) {
        const reached = await reachGuest(host.name, guest, transport, planning);
        if ("unreachable" in reached)
          cannotShutDown(entry, `it cannot be reached to power it off (${reached.unreachable})`);
      }
    }),
  );
  return planned.map((p) => p.entry);
}

/** The guest cannot be stopped after all: its held images are left alone, and the plan says why. */
function cannotShutDown(entry: GuestOnHost, why: string): void {
  if (!entry.vm) return;
  entry.vm = { ...entry.vm, canShutDown: false, shutdown: false };
  entry.notes.push(`not shut down: ${why}`);
  entry.disks = entry.disks.map((d) =>
    d.afterShutdown && isChange(d.action)
      ? {
          ...d,
          action: "skip",
          reason: `in use by its running guest, which is not shut down: ${why}`,
          steps: [],
          leftovers: [],
        }
      : d,
  );
}

/** The connection into the guest, opened once per run (SSH through the hypervisor, or its agent). */
async function reachGuest(
  host: string,
  guest: Guest,
  hypervisor: Transport,
  planning: GuestPlanning,
): Promise<{ transport: Transport } | { unreachable: string }> {
  const key = `${host}\0${guest.name}`;
  const existing = planning.guestTransports.get(key);
  if (existing) return { transport: existing };
  if (guest.access === "agent") {
    const transport = createAgentTransport({ hypervisor, uri: guest.vm.libvirtUri, domain: guest.name });
    planning.guestTransports.set(key, transport);
    return { transport };
  }
  if (!guest.ssh) return { unreachable: "the guest has no ssh: settings" };
  const opened = await openGuestTransport(guest, hypervisor, planning.ssh);
  if ("transport" in opened) planning.guestTransports.set(key, opened.transport);
  return opened;
}

/**
 * What the guest's images may grow by while zeros fill them: the least free space beside any of
 * them, less the safety margin and the room their rewrites will need.
 */
function hostSide(
  vm: VmDecision,
  facts: readonly DiskFacts[],
  disks: readonly DiskPlan[],
  policy: ReclaimPolicy,
): HostSide {
  const present = facts.filter((f) => f.stat.exists && f.free);
  const side: HostSide = {};
  if (vm.discardReachesImages !== undefined) side.discardReachesImages = vm.discardReachesImages;
  // A running guest that keeps its images (not shut down for them) gets no fill: nothing would
  // drop the zeros.
  if (disks.some((d) => d.inUse && !d.afterShutdown))
    side.noRewrite = `its running guest is not shut down for its images (${vm.whyRunning ?? "it keeps them in use"})`;
  if (present.length === 0) return side;
  const free = Math.min(...present.map((f) => f.free?.availableBytes ?? 0));
  const rewrites = disks.reduce((sum, d) => sum + (d.estimate?.allocatedAfter ?? 0), 0);
  side.roomBytes = Math.max(0, free - freeSpaceMargin(free) - rewrites);
  side.slack = {
    allocatedBytes: present.reduce((sum, f) => sum + (f.stat.exists ? f.stat.allocated : 0), 0),
    minReclaimableBytes: policy.minReclaimableBytes,
    minRatio: policy.minRatio,
  };
  return side;
}

/** Connects to the guest (through its hypervisor) and decides what to free inside it. */
async function planZero(
  host: string,
  guest: Guest,
  hypervisor: Transport,
  planning: GuestPlanning,
  side: HostSide,
): Promise<{ plan: GuestZeroPlan } | { note: string }> {
  const skipped = (why: string) => ({
    note: `guest-side steps (zero: ${guest.policy.zero}) skipped: ${why}; only the host-side rewrite runs`,
  });
  const opened = await reachGuest(host, guest, hypervisor, planning);
  if ("unreachable" in opened) return skipped(opened.unreachable);
  try {
    return {
      plan: await checkZeroGuest(
        opened.transport,
        guest.name,
        guest.policy.zero,
        guest.policy.fillReserve,
        side,
        guest.os,
      ),
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
  shard: Shard | undefined,
): Map<string, (Assignment | Discovery)[]> {
  const limited = limit === undefined ? undefined : selectHosts(inventory, limit);
  if (limited && "error" in limited) throw new UsageError(`--limit: ${limited.error}`);
  const out = new Map<string, (Assignment | Discovery)[]>();
  plays.forEach((play, playIndex) => {
    const selected = selectHosts(inventory, play.hosts);
    const names = ("hosts" in selected ? selected.hosts : []).filter(
      (n) => !limited || limited.hosts.includes(n),
    );
    if (play.discover) {
      for (const name of names)
        out.set(name, [...(out.get(name) ?? []), { play, playIndex, discover: play.discover }]);
    }
    for (const guest of play.guests) {
      const targets = guest.host !== undefined ? names.filter((n) => n === guest.host) : names;
      for (const name of targets) {
        // A guest without `host:` is sharded by its name alone: the same share on every host.
        if (!inShard(shard, guest.host ?? "", guest.name)) continue;
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
