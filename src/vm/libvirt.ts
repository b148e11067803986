/**
 * What libvirt knows about a guest, read with `virsh` on its hypervisor, and the two commands
 * that change its state. Facts are a command and a pure parser, tested on recorded output.
 */
import type { Fact } from "../facts/fact.js";
import { runBatch } from "../transport/batch.js";
import { type CommandResult, describeFailure, type Transport } from "../transport/transport.js";

/** A disk of a domain as its XML defines it. */
export interface DomainDisk {
  /** The image file (or block device) QEMU opens. */
  source: string;
  /** An image file, or a block device (a volume, never rewritten by reclaim). */
  kind: "file" | "block";
  /** The `discard` attribute of the disk's driver: "unmap" lets a guest's trim reach the image. */
  discard?: string;
}

/**
 * domstate's words: running, idle, paused, in shutdown, shut off, crashed, pmsuspended. Or: virsh
 * is not installed, or libvirt has no such domain, or virsh failed for another reason.
 */
export type DomainLookup =
  | {
      kind: "domain";
      state: string /** Defined in libvirt; a transient domain vanishes when it stops. */;
      persistent?: boolean;
    }
  | { kind: "no-virsh" }
  | { kind: "no-domain" }
  | { kind: "error"; message: string };

export interface DomainArgs {
  uri: string;
  name: string;
}

/** `virsh` with its connection; `--` before the domain so no name is ever read as an option. */
export function virshArgv(uri: string, command: string, name: string, ...options: string[]): string[] {
  return ["virsh", "-q", "-c", uri, command, ...options, "--", name];
}

export const domainState: Fact<DomainArgs, DomainLookup> = {
  name: "libvirt domain state",
  argv: ({ uri, name }) => virshArgv(uri, "domstate", name),
  parse: (result) => {
    const problem = lookupProblem(result);
    if (problem) return problem;
    const state = result.stdout.trim().split("\n")[0]?.trim() ?? "";
    if (!state) return { kind: "error", message: "virsh domstate printed nothing" };
    return { kind: "domain", state };
  },
};

/** domstate's word and whether the domain is defined (persistent), from `virsh dominfo`. */
export const domainInfo: Fact<DomainArgs, DomainLookup> = {
  name: "libvirt domain info",
  argv: ({ uri, name }) => virshArgv(uri, "dominfo", name),
  parse: (result) => {
    const problem = lookupProblem(result);
    if (problem) return problem;
    const field = (key: string) => new RegExp(`^${key}:\\s*(.+?)\\s*$`, "m").exec(result.stdout)?.[1];
    const state = field("State");
    if (!state) return { kind: "error", message: "virsh dominfo printed no State" };
    const persistent = field("Persistent");
    return { kind: "domain", state, ...(persistent ? { persistent: persistent === "yes" } : {}) };
  },
};

export const domainXml: Fact<DomainArgs, DomainDisk[] | DomainLookup> = {
  name: "libvirt domain definition",
  argv: ({ uri, name }) => virshArgv(uri, "dumpxml", name),
  parse: (result) => lookupProblem(result) ?? parseDomainDisks(result.stdout),
};

/** The reasons a lookup found no domain state, or undefined when the command succeeded. */
function lookupProblem(result: CommandResult): DomainLookup | undefined {
  if (result.exitCode === 0) return undefined;
  const text = `${result.stderr}\n${result.stdout}`;
  // Only the shell's own words: a stopped libvirtd also says "No such file or directory" (its socket).
  if (result.exitCode === 127 || /virsh: (command )?not found/.test(text)) return { kind: "no-virsh" };
  if (/failed to get domain|Domain not found|no domain with matching name/i.test(text))
    return { kind: "no-domain" };
  return { kind: "error", message: describeFailure(result) };
}

/**
 * The file disks of a domain's XML, with their driver's discard setting. libvirt writes its XML
 * in one regular form, so attributes are read with patterns rather than a full XML parser.
 */
export function parseDomainDisks(xml: string): DomainDisk[] {
  const disks: DomainDisk[] = [];
  for (const match of xml.matchAll(/<disk\b([^>]*)>([\s\S]*?)<\/disk>/g)) {
    const [, attributes = "", body = ""] = match;
    if (/\bdevice=['"](cdrom|floppy)['"]/.test(attributes)) continue;
    const source = /<source\b[^>]*\b(file|dev)=(['"])(.*?)\2/.exec(body);
    if (!source?.[3]) continue;
    const discard = /<driver\b[^>]*\bdiscard=(['"])(.*?)\1/.exec(body)?.[2];
    disks.push({
      source: unescapeXml(source[3]),
      kind: source[1] === "file" ? "file" : "block",
      ...(discard ? { discard } : {}),
    });
  }
  return disks;
}

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|quot|apos|amp);/g, (_, name: string) => XML_ENTITIES[name] ?? "");
}

const XML_ENTITIES: Record<string, string> = { lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" };

/** Every domain libvirt knows, running or not. */
export const domainNames: Fact<{ uri: string }, string[] | DomainLookup> = {
  name: "libvirt domains",
  argv: ({ uri }) => ["virsh", "-q", "-c", uri, "list", "--all", "--name"],
  parse: (result) =>
    lookupProblem(result) ??
    result.stdout
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== ""),
};

/** States in which the guest's QEMU holds its images open. */
export function isActive(state: string): boolean {
  return state !== "shut off" && state !== "crashed";
}

/**
 * libvirt's answer about each guest: its state and its disks. One `virsh list` per connection
 * URI first, then, in one more round trip, `dominfo` and `dumpxml` of only the guests libvirt
 * knows. A host without libvirt (or with none of these guests) costs one virsh, not two a guest:
 * on a fleet of plain hypervisors that was most of a no-op run's time.
 */
export async function gatherLibvirtFacts(
  transport: Transport,
  domains: readonly DomainArgs[],
): Promise<{ lookup: DomainLookup; disks?: DomainDisk[] }[]> {
  if (domains.length === 0) return [];
  const uris = [...new Set(domains.map((d) => d.uri))];
  const lists = await runBatch(
    transport,
    uris.map((uri) => domainNames.argv({ uri })),
  );
  const known = new Map<string, string[] | DomainLookup>();
  for (const [i, uri] of uris.entries()) {
    const listed = lists[i];
    known.set(
      uri,
      listed ? domainNames.parse(listed, { uri }) : { kind: "error", message: "virsh gave no answer" },
    );
  }
  const asked = domains.filter((d) => {
    const names = known.get(d.uri);
    return Array.isArray(names) && names.includes(d.name);
  });
  const results =
    asked.length === 0
      ? []
      : await runBatch(
          transport,
          asked.flatMap((d) => [domainInfo.argv(d), domainXml.argv(d)]),
        );
  return domains.map((d) => {
    const names = known.get(d.uri) ?? { kind: "error", message: "virsh gave no answer" };
    if (!Array.isArray(names)) return { lookup: names };
    const i = asked.indexOf(d);
    if (i < 0) return { lookup: { kind: "no-domain" } };
    const state = results[2 * i];
    const xml = results[2 * i + 1];
    if (!state || !xml) return { lookup: { kind: "error", message: "virsh gave no answer" } };
    const lookup = domainInfo.parse(state, d);
    const disks = domainXml.parse(xml, d);
    return Array.isArray(disks) ? { lookup, disks } : { lookup };
  });
}
