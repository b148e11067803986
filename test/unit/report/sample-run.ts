/**
 * A realistic plan and run result, made with the planner's own functions, for the golden and
 * schema tests of every report. Three hypervisors: on kvm01, web01 is trimmed and filled inside,
 * shut down, one disk rewritten and one ok, started again; on kvm02, db01 will not shut down (its
 * disk is skipped, another is refused for its snapshots) and mail01's rewrite fails verification;
 * kvm03 is unreachable. Fixed times and durations, so the outputs are stable.
 */
import { formatBytes } from "../../../src/config/units.js";
import type { GuestFilesystem } from "../../../src/guest/filesystems.js";
import { buildPlan, type GuestOnHost } from "../../../src/plan/build.js";
import { decideDisk } from "../../../src/plan/decide-disk.js";
import type { DiskPlan, GuestVmPlan, Plan } from "../../../src/plan/plan.js";
import { recapHosts } from "../../../src/run/recap.js";
import type { DiskResult, GuestZeroResult, RunResult, VmActionResult } from "../../../src/run/results.js";
import { decideZero } from "../../../src/tasks/zero-guest.js";
import { bloatedDisk, GiB, healthyInfo, MiB, policy } from "../../helpers/facts.js";

export const STARTED_AT = "2026-01-15T02:00:00.000Z";
const PLAY = "Reclaim the lab hypervisors";

const graceful = { ...policy, shutdown: "graceful" as const };
/** web01 is trimmed and filled inside first; the other guests override zero to none. */
const web01Policy = { ...graceful, zero: "auto" as const };

function disk(
  host: string,
  guest: string,
  path: string,
  sizes: { allocated: number; required: number },
  extra: { inUse?: boolean; snapshots?: string[]; inode: number },
): DiskPlan {
  const facts = bloatedDisk({ path });
  if (!facts.stat.exists) throw new Error("bloatedDisk makes an image that exists");
  return decideDisk({
    host,
    guest,
    policy: guest === "web01" ? web01Policy : graceful,
    guestStops: extra.inUse === true,
    facts: {
      ...facts,
      stat: {
        ...facts.stat,
        inode: extra.inode,
        allocated: sizes.allocated,
        size: sizes.allocated + 64 * MiB,
      },
      info: { ...healthyInfo, virtualSize: 40 * GiB, snapshots: extra.snapshots ?? [] },
      measure: { required: sizes.required, fullyAllocated: 40 * GiB, bitmaps: 0 },
      ...(extra.inUse ? { inUse: { message: 'Failed to get shared "write" lock' } } : {}),
    },
  });
}

const libvirtRunning: GuestVmPlan = {
  manager: "libvirt",
  state: "running",
  canShutDown: true,
  shutdown: true,
  timeoutMs: 300_000,
  libvirtUri: "qemu:///system",
};

const webFilesystems: GuestFilesystem[] = [
  {
    mount: "/",
    device: "/dev/vda1",
    type: "ext4",
    sizeBytes: 30 * GiB,
    usedBytes: 5 * GiB,
    availableBytes: 24 * GiB,
    discard: true,
  },
  {
    mount: "/home",
    device: "/dev/vda2",
    type: "xfs",
    sizeBytes: 8 * GiB,
    usedBytes: 1 * GiB,
    availableBytes: 7 * GiB,
    discard: false,
  },
];

export const WEB01 = "/var/lib/libvirt/images/web01.qcow2";
export const WEB01_DATA = "/var/lib/libvirt/images/web01-data.qcow2";
export const DB01 = "/var/lib/libvirt/images/db01.qcow2";
export const DB01_OLD = "/var/lib/libvirt/images/db01-before_upgrade.qcow2";
export const MAIL01 = "/srv/images/mail01.qcow2";

function guests(): { kvm01: GuestOnHost[]; kvm02: GuestOnHost[] } {
  const base = { play: PLAY, playIndex: 0, pinned: true, notes: [] as string[] };
  return {
    kvm01: [
      {
        ...base,
        host: "kvm01",
        guest: "web01",
        zero: decideZero("web01", webFilesystems, web01Policy.zero, web01Policy.fillReserve, {
          roomBytes: 200 * GiB,
          discardReachesImages: true,
        }),
        vm: libvirtRunning,
        disks: [
          disk(
            "kvm01",
            "web01",
            WEB01,
            { allocated: 20 * GiB, required: 6 * GiB },
            { inUse: true, inode: 11 },
          ),
          disk(
            "kvm01",
            "web01",
            WEB01_DATA,
            { allocated: 5 * GiB, required: 5 * GiB - 40 * MiB },
            { inUse: true, inode: 12 },
          ),
        ],
      },
    ],
    kvm02: [
      {
        ...base,
        host: "kvm02",
        guest: "db01",
        vm: libvirtRunning,
        disks: [
          disk(
            "kvm02",
            "db01",
            DB01,
            { allocated: 40 * GiB, required: 12 * GiB },
            { inUse: true, inode: 21 },
          ),
          disk(
            "kvm02",
            "db01",
            DB01_OLD,
            { allocated: 8 * GiB, required: 2 * GiB },
            { snapshots: ["before-upgrade"], inode: 22 },
          ),
        ],
      },
      {
        ...base,
        host: "kvm02",
        guest: "mail01",
        notes: ["libvirt says the guest is shut off: nothing runs inside it to trim or fill"],
        vm: { ...libvirtRunning, state: "shut off", canShutDown: false, shutdown: false },
        disks: [disk("kvm02", "mail01", MAIL01, { allocated: 10 * GiB, required: 3 * GiB }, { inode: 31 })],
      },
    ],
  };
}

export function samplePlan(): Plan {
  const g = guests();
  return buildPlan(
    [
      { host: "kvm01", plays: [0], guests: g.kvm01 },
      { host: "kvm02", plays: [0], guests: g.kvm02 },
      { host: "kvm03", plays: [0], unreachable: "connect ECONNREFUSED 192.0.2.13:22", guests: [] },
    ],
    new Date(STARTED_AT),
  );
}

function planned(plan: Plan, path: string): DiskPlan {
  const found = plan.hosts.flatMap((h) => h.guests.flatMap((g) => g.disks)).find((d) => d.path === path);
  if (!found) throw new Error(`no disk ${path} in the sample plan`);
  return found;
}

/** The result of a plan's disk, as the executor reports it. */
function result(plan: Plan, path: string, outcome: Partial<DiskResult>): DiskResult {
  const d = planned(plan, path);
  return {
    host: d.host,
    guest: d.guest,
    path: d.path,
    action: d.action,
    status: "ok",
    message: d.reason,
    steps: [],
    durationMs: 0,
    ...(d.estimate ? { estimate: d.estimate, allocatedBefore: d.estimate.allocatedBefore } : {}),
    ...outcome,
  };
}

const step = (kind: DiskResult["steps"][number]["kind"], durationMs: number, message?: string) => ({
  kind,
  ok: message === undefined,
  durationMs,
  ...(message ? { message } : {}),
});

const shutdownFailure =
  "did not shut down within 300 s (libvirt says running); not forced off, its images untouched";

export function sampleResult(plan: Plan): RunResult {
  // The fill wrote what the plan sized it at.
  const fill = plan.hosts[0]?.guests[0]?.zero?.steps.find((s) => s.kind === "fill");
  const filled = fill?.kind === "fill" ? fill.mib * MiB : 0;
  const guestSide: GuestZeroResult[] = [
    {
      host: "kvm01",
      guest: "web01",
      ok: true,
      message: `/: trimmed 19 GiB; /home: wrote ${formatBytes(filled)} of zeros`,
      outcomes: [
        { mount: "/", kind: "trim", ok: true, bytes: 19 * GiB, message: "trimmed 19 GiB" },
        {
          mount: "/home",
          kind: "fill",
          ok: true,
          bytes: filled,
          message: `wrote ${formatBytes(filled)} of zeros`,
        },
      ],
      durationMs: 95_250,
    },
  ];
  const vms: VmActionResult[] = [
    vm("kvm01", "web01", "shutdown", true, "shut down in 12 s", 12_400),
    vm("kvm01", "web01", "start", true, "started again (virsh start)", 850),
    vm("kvm02", "db01", "shutdown", false, shutdownFailure, 300_000),
    vm("kvm02", "db01", "start", true, "still running: it never went down", 120),
  ];
  const disks: DiskResult[] = [
    result(plan, WEB01, {
      status: "changed",
      message: "rewritten and verified",
      allocatedAfter: 5 * GiB + 300 * MiB,
      steps: [
        step("convert", 150_000),
        step("copy-attributes", 40),
        step("flush", 2_500),
        step("verify", 28_000),
        step("swap", 300),
        step("finish-journal", 60),
      ],
      durationMs: 180_900,
    }),
    result(plan, WEB01_DATA, { status: "ok", allocatedAfter: 5 * GiB, durationMs: 400 }),
    result(plan, DB01, { status: "skipped", message: `the guest was not shut down: ${shutdownFailure}` }),
    result(plan, DB01_OLD, { status: "skipped" }),
    result(plan, MAIL01, {
      status: "failed",
      message:
        "verify failed: qemu-img exited with 1: qemu-img: Could not open '/srv/images/.mail01.qcow2.reclaim-tmp': Failed to get \"consistent read\" lock / Is another process using the image [/srv/images/.mail01.qcow2.reclaim-tmp]? (the original is untouched)",
      steps: [
        step("convert", 61_000),
        step("copy-attributes", 35),
        step("flush", 1_900),
        step(
          "verify",
          450,
          "qemu-img exited with 1: qemu-img: Could not open '/srv/images/.mail01.qcow2.reclaim-tmp': Failed to get \"consistent read\" lock / Is another process using the image [/srv/images/.mail01.qcow2.reclaim-tmp]?",
        ),
      ],
      durationMs: 63_400,
    }),
  ];
  return {
    guests: guestSide,
    vms,
    disks,
    hosts: recapHosts(plan, disks, { guests: guestSide, vms }),
    durationMs: 612_345,
  };
}

function vm(
  host: string,
  guest: string,
  action: VmActionResult["action"],
  ok: boolean,
  message: string,
  durationMs: number,
): VmActionResult {
  return { host, guest, action, manager: "libvirt", ok, message, durationMs };
}
