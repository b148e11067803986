/**
 * The validated, resolved configuration the planner works on: sizes in bytes, durations in
 * milliseconds, every policy key filled in (play policy over defaults, guest overrides over play).
 * The raw shapes the user writes are in playbook.types.ts, generated from schemas/playbook.schema.json.
 */

/** Where a thing was declared, so later messages can point back at the file. */
export interface SourceRef {
  file: string;
  line: number;
  column: number;
}

export type ZeroMode = "auto" | "trim" | "fill" | "none";
export type ShutdownMode = "graceful" | "never";
export type GuestOs = "linux" | "windows";
export type VmManager = "auto" | "libvirt" | "guest";

/** How a running guest is stopped for its rewrite and started again (policy.shutdown: graceful). */
export interface VmSettings {
  manager: VmManager;
  libvirtUri: string;
  /** For the guest manager: argv run on the hypervisor to start the guest again ({guest} replaced). */
  startCommand?: string[];
}

/** Free space to leave in a guest while zero-filling: a share of the filesystem or a fixed size. */
export type Reserve = { kind: "ratio"; ratio: number } | { kind: "bytes"; bytes: number };

export interface ConvertPolicy {
  format: "qcow2";
  compress: boolean;
  keepBackup: boolean;
}

export interface ReclaimPolicy {
  /** Skip a disk that would give back fewer bytes than this. */
  minReclaimableBytes: number;
  /** ...or less than this share (0..1) of what it allocates now. */
  minRatio: number;
  zero: ZeroMode;
  fillReserve: Reserve;
  shutdown: ShutdownMode;
  shutdownTimeoutMs: number;
  convert: ConvertPolicy;
  /** Disks of one hypervisor rewritten at the same time. */
  maxParallelPerHost: number;
}

/** Ansible's `serial`: hosts per batch, as a count or a share of the play's hosts. */
export type Serial = { kind: "count"; count: number } | { kind: "ratio"; ratio: number };

export interface GuestSsh {
  host: string;
  user?: string;
  port?: number;
  /** Absent: through the hypervisor's connection. "none": directly. Otherwise a ProxyJump spec. */
  jump?: string;
}

export interface GuestDisk {
  /** Absolute path on the hypervisor. */
  path: string;
  source: SourceRef;
}

export interface Guest {
  name: string;
  /** The inventory host the guest lives on; absent: looked for on every host of the play. */
  host?: string;
  /** Where `host` is written, for messages about it. */
  hostSource?: SourceRef;
  os: GuestOs;
  ssh?: GuestSsh;
  /** How the guest-side steps get inside it: SSH, or the QEMU guest agent through libvirt. */
  access: "ssh" | "agent";
  vm: VmSettings;
  disks: GuestDisk[];
  policy: ReclaimPolicy;
  source: SourceRef;
}

/** `guests: {discover: libvirt}`: every libvirt domain of each host, filtered by name patterns. */
export interface GuestDiscovery {
  kind: "libvirt";
  /** Shell wildcard patterns; empty: every domain. */
  include: string[];
  exclude: string[];
  /** What each discovered guest gets (the play's policy comes with it). */
  os: GuestOs;
  access: "ssh" | "agent";
  vm: VmSettings;
  source: SourceRef;
}

export interface Play {
  name: string;
  /** Ansible host pattern, resolved against the inventory. */
  hosts: string;
  /** Where `hosts` is written, for messages about the pattern. */
  hostsSource: SourceRef;
  become: boolean;
  /** Absent: all of the play's hosts in one batch. */
  serial?: Serial;
  /** Stop the play once more than this percentage of its hosts failed; absent: never. */
  maxFailPercentage?: number;
  policy: ReclaimPolicy;
  /** The play's `vm` settings; each guest's are these with its own keys over them. */
  vm: VmSettings;
  guests: Guest[];
  /** Set instead of `guests` when the play discovers them on each host. */
  discover?: GuestDiscovery;
  source: SourceRef;
}

export interface Playbook {
  file: string;
  plays: Play[];
}
