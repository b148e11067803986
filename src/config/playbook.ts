/**
 * Reads a playbook: YAML with positions, then schemas/playbook.schema.json, then the checks a
 * schema cannot express, then resolution into the model (units parsed, policies merged). Every
 * problem in the file is reported at once, each at its file:line:column.
 */
import { posix } from "node:path";
import { ConfigError } from "../errors.js";
import { globToRegExp } from "../inventory/glob.js";
import { type Diagnostic, sortDiagnostics } from "./diagnostic.js";
import type {
  Guest,
  GuestDiscovery,
  GuestDisk,
  GuestSsh,
  Play,
  Playbook,
  ReclaimPolicy,
  Serial,
  SourceRef,
  VmSettings,
} from "./model.js";
import type * as Raw from "./playbook.types.js";
import { checkSchema, schemaValidator } from "./schema-check.js";
import { formatBytes, parseDuration, parseRatio, parseReserve, parseSize } from "./units.js";
import { diagnosticAt, locate, parseYaml, type SourceDocument, type YamlPath } from "./yaml-source.js";

/** A resolved playbook and the document it came from, for positioning later diagnostics. */
export interface LoadedPlaybook {
  playbook: Playbook;
  source: SourceDocument;
}

/** What a play gets for every policy key it leaves out; the schema's `default`s say the same. */
export const DEFAULT_POLICY: ReclaimPolicy = {
  minReclaimableBytes: 256 * 2 ** 20,
  minRatio: 0.1,
  zero: "auto",
  fillReserve: { kind: "ratio", ratio: 0.05 },
  shutdown: "never",
  shutdownTimeoutMs: 5 * 60_000,
  convert: { format: "qcow2", compress: false, keepBackup: false },
  maxParallelPerHost: 1,
};

/** What a play gets for the `vm` keys it leaves out. */
export const DEFAULT_VM: VmSettings = { manager: "auto", libvirtUri: "qemu:///system" };

/** `vm` keys over a base, key by key (the schema has checked their shapes). */
export function resolveVm(base: VmSettings, raw: unknown): VmSettings {
  if (!isRecord(raw)) return base;
  const vm = raw as Raw.Vm;
  const out: VmSettings = {
    manager: vm.manager ?? base.manager,
    libvirtUri: vm.libvirt_uri ?? base.libvirtUri,
  };
  const start = Array.isArray(vm.start_command) ? [...vm.start_command] : base.startCommand;
  if (start) out.startCommand = start;
  return out;
}

/** A policy value that matched the schema's shape but not its meaning (`min_ratio: 150%`). */
export interface PolicyProblem {
  key: keyof Raw.Policy;
  /** Says what was expected and what was found, without naming the key. */
  message: string;
}

/**
 * Parse `text` (the contents of `file`) into a resolved playbook: play policy over
 * DEFAULT_POLICY, guest keys over the play's policy (`convert` key by key).
 * @throws ConfigError with every problem found, in position order; nothing else for bad input.
 */
export function loadPlaybook(file: string, text: string): LoadedPlaybook {
  const read = readPlaybook(file, text);
  if (read.diagnostics.length > 0 || !read.playbook) throw new ConfigError(read.diagnostics);
  return { playbook: read.playbook, source: read.source };
}

export interface ReadPlaybook {
  /** Present whenever the document is a list: plays with problems are resolved as far as they go. */
  playbook?: Playbook;
  source: SourceDocument;
  /** Every problem, in position order. */
  diagnostics: Diagnostic[];
}

/**
 * Like loadPlaybook, but returns the problems with whatever could be resolved, so that checks
 * against the inventory can still run and every problem is reported in one go.
 */
export function readPlaybook(file: string, text: string): ReadPlaybook {
  const source = parseYaml(file, text);
  if (source.diagnostics.length > 0) return { source, diagnostics: sortDiagnostics(source.diagnostics) };
  const shapeProblem = checkTopLevel(source);
  if (shapeProblem) return { source, diagnostics: [shapeProblem] };

  const schemaProblems = checkSchema(source, schemaValidator("playbook"));
  const diagnostics: Diagnostic[] = [];
  const playbook = resolvePlaybook(source, diagnostics);
  // One complaint per place: where the schema already objected, a second opinion is noise.
  const taken = new Set(schemaProblems.map((d) => `${d.line}:${d.column}`));
  const all = [...schemaProblems, ...diagnostics.filter((d) => !taken.has(`${d.line}:${d.column}`))];
  return { playbook, source, diagnostics: sortDiagnostics(all) };
}

const MAX_SIZE = formatBytes(Number.MAX_SAFE_INTEGER);

/** The schema's patterns catch wrong forms; these messages are for values out of range. */
const EXPECTED = {
  size: `expected a size such as 512MiB or 1.5G, of at most ${MAX_SIZE}`,
  ratio: "expected a share between 0% and 100%, such as 10% or 0.1",
  reserve: `expected a share between 0% and 100% (such as 5%) or a size with a unit (such as 2GiB) of at most ${MAX_SIZE}`,
  duration: "expected a duration such as 90s, 5m or 1h, of at most 2^53 ms",
};

/**
 * Overlay the policy keys present in `overrides` on `base`. A value that does not parse keeps the
 * base value and is reported in `problems`; `convert` is merged key by key.
 */
export function resolvePolicy(
  base: ReclaimPolicy,
  overrides: Raw.Policy,
): { policy: ReclaimPolicy; problems: PolicyProblem[] } {
  const problems: PolicyProblem[] = [];
  const read = <T>(key: keyof Raw.Policy, parse: (v: string | number) => T | undefined, expected: string) => {
    const value: unknown = overrides[key];
    if (value === undefined) return undefined;
    const parsed = typeof value === "string" || typeof value === "number" ? parse(value) : undefined;
    if (parsed === undefined) problems.push({ key, message: `${expected}, found ${describe(value)}` });
    return parsed;
  };
  const convert = isRecord(overrides.convert) ? (overrides.convert as Raw.Convert) : {};
  const policy: ReclaimPolicy = {
    minReclaimableBytes: read("min_reclaimable", parseSize, EXPECTED.size) ?? base.minReclaimableBytes,
    minRatio: read("min_ratio", parseRatio, EXPECTED.ratio) ?? base.minRatio,
    zero: overrides.zero ?? base.zero,
    fillReserve: read("fill_reserve", parseReserve, EXPECTED.reserve) ?? base.fillReserve,
    shutdown: overrides.shutdown ?? base.shutdown,
    shutdownTimeoutMs: read("shutdown_timeout", parseDuration, EXPECTED.duration) ?? base.shutdownTimeoutMs,
    convert: {
      format: convert.format ?? base.convert.format,
      compress: convert.compress ?? base.convert.compress,
      keepBackup: convert.keep_backup ?? base.convert.keepBackup,
    },
    maxParallelPerHost:
      typeof overrides.max_parallel_per_host === "number"
        ? overrides.max_parallel_per_host
        : base.maxParallelPerHost,
  };
  return { policy, problems };
}

/** The two mistakes that make every schema message beside the point. */
function checkTopLevel(source: SourceDocument): Diagnostic | undefined {
  const { value } = source;
  if (source.doc.contents === null || value === null || value === undefined) {
    return {
      file: source.file,
      line: 1,
      column: 1,
      message: "the playbook is empty: expected a list of plays",
    };
  }
  if (!Array.isArray(value)) {
    return diagnosticAt(
      source,
      [],
      `a playbook is a list of plays, found ${describe(value)}; start each play with '- '`,
    );
  }
  return undefined;
}

/**
 * The model for the parts of the document that have the right shape, collecting the problems
 * only meaning reveals. Tolerates any shape: the caller discards the result when the schema failed.
 */
/** The schema has checked the form: a whole number of hosts, or `N%`. */
function serialOf(raw: unknown): { serial?: Serial } {
  if (typeof raw === "number" && Number.isInteger(raw) && raw >= 1)
    return { serial: { kind: "count", count: raw } };
  if (typeof raw === "string" && /^\d+%$/.test(raw))
    return { serial: { kind: "ratio", ratio: Number(raw.slice(0, -1)) / 100 } };
  return {};
}

function resolvePlaybook(source: SourceDocument, diagnostics: Diagnostic[]): Playbook {
  const plays = (source.value as unknown[]).flatMap((raw, index): Play[] => {
    if (!isRecord(raw)) return [];
    const play = raw as unknown as Raw.Play;
    const at: YamlPath = [index];
    const base = policyAt(
      source,
      [...at, "policy"],
      isRecord(play.policy) ? play.policy : {},
      DEFAULT_POLICY,
      diagnostics,
    );
    const vm = resolveVm(DEFAULT_VM, play.vm);
    const guests = Array.isArray(play.guests) ? play.guests : [];
    const discover = isRecord(play.guests)
      ? resolveDiscovery(source, [...at, "guests"], play.guests as Raw.Play["guests"], vm, diagnostics)
      : undefined;
    const resolved = guests.map((guest, g) =>
      isRecord(guest)
        ? resolveGuest(source, [...at, "guests", g], guest, { policy: base, vm }, diagnostics)
        : undefined,
    );
    checkDuplicates(source, [...at, "guests"], resolved, diagnostics);
    return [
      {
        name: play.name,
        hosts: play.hosts,
        hostsSource: sourceRef(source, [...at, "hosts"]),
        become: play.become ?? false,
        ...serialOf(play.serial),
        ...(typeof play.max_fail_percentage === "number"
          ? { maxFailPercentage: play.max_fail_percentage }
          : {}),
        policy: base,
        vm,
        guests: resolved.filter((guest) => guest !== undefined),
        ...(discover ? { discover } : {}),
        source: sourceRef(source, at),
      },
    ];
  });
  return { file: source.file, plays };
}

function policyAt(
  source: SourceDocument,
  at: YamlPath,
  raw: Raw.Policy,
  base: ReclaimPolicy,
  diagnostics: Diagnostic[],
): ReclaimPolicy {
  const { policy, problems } = resolvePolicy(base, raw);
  for (const p of problems) {
    diagnostics.push(diagnosticAt(source, [...at, p.key], `${keyPath([...at, p.key])}${p.message}`));
  }
  return policy;
}

function resolveGuest(
  source: SourceDocument,
  at: YamlPath,
  raw: Raw.Guest,
  play: { policy: ReclaimPolicy; vm: VmSettings },
  diagnostics: Diagnostic[],
): Guest {
  const disks = (Array.isArray(raw.disks) ? (raw.disks as unknown[]) : []).flatMap((disk, d): GuestDisk[] => {
    const path = typeof disk === "string" ? disk : isRecord(disk) ? disk.path : undefined;
    if (typeof path !== "string") return [];
    const diskAt: YamlPath = typeof disk === "string" ? [...at, "disks", d] : [...at, "disks", d, "path"];
    const problem = diskPathProblem(path);
    if (problem)
      diagnostics.push(diagnosticAt(source, diskAt, `${keyPath(diskAt)}${problem}, found ${describe(path)}`));
    return [{ path: posix.normalize(path), source: sourceRef(source, diskAt) }];
  });
  const guest: Guest = {
    name: raw.name,
    os: raw.os ?? "linux",
    access: raw.access ?? "ssh",
    vm: resolveVm(play.vm, raw.vm),
    disks,
    policy: policyAt(source, at, raw, play.policy, diagnostics),
    source: sourceRef(source, at),
  };
  if (raw.host !== undefined) {
    guest.host = raw.host;
    guest.hostSource = sourceRef(source, [...at, "host"]);
  }
  if (isRecord(raw.ssh)) guest.ssh = resolveSsh(raw.ssh);
  return guest;
}

function resolveDiscovery(
  source: SourceDocument,
  at: YamlPath,
  raw: Raw.Play["guests"],
  vm: VmSettings,
  diagnostics: Diagnostic[],
): GuestDiscovery | undefined {
  if (!raw || Array.isArray(raw) || raw.discover !== "libvirt") return undefined;
  const patterns = (key: "include" | "exclude") =>
    (Array.isArray(raw[key]) ? (raw[key] as unknown[]) : []).filter((p, i): p is string => {
      if (typeof p !== "string") return false;
      if (globToRegExp(p)) return true;
      diagnostics.push(
        diagnosticAt(source, [...at, key, i], `guests.${key}: cannot read the pattern ${JSON.stringify(p)}`),
      );
      return false;
    });
  return {
    kind: "libvirt",
    include: patterns("include"),
    exclude: patterns("exclude"),
    os: raw.os ?? "linux",
    access: raw.access ?? "ssh",
    vm: resolveVm(vm, raw.vm),
    source: sourceRef(source, at),
  };
}

function resolveSsh(raw: Raw.Ssh): GuestSsh {
  const ssh: GuestSsh = { host: raw.host };
  if (raw.user !== undefined) ssh.user = raw.user;
  if (raw.port !== undefined) ssh.port = raw.port;
  if (raw.jump !== undefined) ssh.jump = raw.jump;
  return ssh;
}

/** What the schema's `^/` cannot see in an absolute path. */
function diskPathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return undefined; // the schema reports it
  if (/[\0\n\r]/.test(path)) return "a disk path must not contain a NUL or a line break";
  if (path.split("/").includes("..")) return "a disk path must not contain '..' segments";
  return undefined;
}

/**
 * A guest is its name on its host, so a name or a disk may repeat in a play only between guests
 * pinned to different hosts. Guests without `host` may be on any host of the play.
 */
function checkDuplicates(
  source: SourceDocument,
  at: YamlPath,
  guests: readonly (Guest | undefined)[],
  diagnostics: Diagnostic[],
): void {
  // Indexed rather than searched: a play of 50,000 guests must not compare each with all before it.
  const names = new Map<string, Earliest>();
  const disks = new Map<string, Earliest>();
  const rank = new Map<Guest, number>();
  guests.forEach((guest, g) => {
    if (!guest) return;
    rank.set(guest, g);
    const first =
      typeof guest.name === "string" ? earliest(names.get(guest.name), guest, rank)[0] : undefined;
    if (first) {
      diagnostics.push(
        diagnosticAt(
          source,
          [...at, g, "name"],
          `guest '${guest.name}' is declared twice in this play (first at line ${first.source.line})`,
        ),
      );
    }
    const own = new Map<string, GuestDisk>();
    for (const disk of guest.disks) {
      const twice = own.get(disk.path);
      const owner = earliest(disks.get(disk.path), guest, rank).find((e) => e !== first);
      if (twice) {
        diagnostics.push({
          ...disk.source,
          message: `disk ${disk.path} is listed twice for guest '${guest.name}' (first at line ${twice.source.line})`,
        });
      } else if (owner) {
        const line = owner.disks.find((other) => other.path === disk.path)?.source.line;
        diagnostics.push({
          ...disk.source,
          message: `disk ${disk.path} already belongs to guest '${owner.name}' (line ${line})`,
        });
      }
      if (!twice) own.set(disk.path, disk);
    }
    if (typeof guest.name === "string") remember(names, guest.name, guest);
    for (const path of own.keys()) remember(disks, path, guest);
  });
}

/**
 * The first two guests seen with a name or a disk: in all, without `host`, and for each host. Two,
 * because the search for a disk's owner passes over the guest whose name is repeated.
 */
interface Earliest {
  all: Guest[];
  anyHost: Guest[];
  byHost: Map<unknown, Guest[]>;
}

function remember(index: Map<string, Earliest>, key: string, guest: Guest): void {
  let seen = index.get(key);
  if (!seen) {
    seen = { all: [], anyHost: [], byHost: new Map() };
    index.set(key, seen);
  }
  const keep = (list: Guest[]) => {
    if (list.length < 2) list.push(guest);
  };
  keep(seen.all);
  if (guest.host === undefined) keep(seen.anyHost);
  else {
    const list = seen.byHost.get(guest.host);
    if (list) keep(list);
    else seen.byHost.set(guest.host, [guest]);
  }
}

/** The (at most two) earliest guests seen that could share a host with `guest`, first first. */
function earliest(seen: Earliest | undefined, guest: Guest, rank: ReadonlyMap<Guest, number>): Guest[] {
  if (!seen) return [];
  if (guest.host === undefined) return seen.all;
  const candidates = [...seen.anyHost, ...(seen.byHost.get(guest.host) ?? [])];
  return candidates.sort((a, b) => (rank.get(a) ?? 0) - (rank.get(b) ?? 0)).slice(0, 2);
}

function sourceRef(source: SourceDocument, at: YamlPath): SourceRef {
  return { file: source.file, ...locate(source, at) };
}

/** `guests.disks: `: the keys leading to a value, as the schema's messages name them. */
function keyPath(path: YamlPath): string {
  const named = path.filter((s): s is string => typeof s === "string");
  return named.length > 0 ? `${named.join(".")}: ` : "";
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${JSON.stringify(value)}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
