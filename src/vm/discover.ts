/**
 * `guests: {discover: libvirt}`: the guests of a play found on each host instead of named in the
 * playbook: every domain libvirt knows (running or not) whose name the patterns take, with the
 * image files its definition lists. Block-device disks are left out: they are volumes, not images.
 */
import type { Guest, GuestDiscovery, ReclaimPolicy } from "../config/model.js";
import { gather } from "../facts/fact.js";
import { globToRegExp } from "../inventory/glob.js";
import { runBatch } from "../transport/batch.js";
import type { Transport } from "../transport/transport.js";
import { domainNames, domainXml } from "./libvirt.js";

export interface Discovered {
  guests: Guest[];
  /** What a person should know: domains without image files, a libvirt that did not answer. */
  notes: string[];
}

/** Pure: whether the discovery's patterns take a domain name. */
export function takesDomain(discovery: Pick<GuestDiscovery, "include" | "exclude">, name: string): boolean {
  const matches = (patterns: readonly string[]) => patterns.some((p) => globToRegExp(p)?.test(name) === true);
  return (discovery.include.length === 0 || matches(discovery.include)) && !matches(discovery.exclude);
}

export async function discoverGuests(
  transport: Transport,
  discovery: GuestDiscovery,
  policy: ReclaimPolicy,
): Promise<Discovered> {
  const uri = discovery.vm.libvirtUri;
  const names = await gather(transport, domainNames, { uri });
  if (!Array.isArray(names)) {
    const why =
      names.kind === "no-virsh"
        ? "the host has no virsh"
        : names.kind === "error"
          ? names.message
          : "libvirt gave no list";
    return { guests: [], notes: [`guests not discovered: ${why}`] };
  }
  const taken = names.filter((name) => takesDomain(discovery, name));
  const xmls = await runBatch(
    transport,
    taken.map((name) => domainXml.argv({ uri, name })),
  );
  const guests: Guest[] = [];
  const notes: string[] = [];
  taken.forEach((name, i) => {
    const result = xmls[i];
    const disks = result ? domainXml.parse(result, { uri, name }) : [];
    if (!Array.isArray(disks)) {
      notes.push(`domain ${name}: its definition could not be read`);
      return;
    }
    const files = disks.filter((d) => d.kind === "file" && d.source.startsWith("/"));
    if (files.length === 0) {
      notes.push(`domain ${name}: no image files among its disks; left out`);
      return;
    }
    guests.push({
      name,
      os: discovery.os,
      access: discovery.access,
      vm: discovery.vm,
      disks: files.map((d) => ({ path: d.source, source: discovery.source })),
      policy,
      source: discovery.source,
    });
  });
  return { guests, notes };
}
