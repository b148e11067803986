/**
 * The example playbooks for each kind of user, read as `reclaim validate -i inventory/lab.yml`
 * reads them (every file checked, host patterns and guests' hosts against the inventory), and
 * what each resolves to: the policy a guest gets, the hosts a play runs on, how guests are found.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Play, ReclaimPolicy } from "../../../src/config/model.js";
import { DEFAULT_POLICY } from "../../../src/config/playbook.js";
import { selectHosts } from "../../../src/inventory/pattern.js";
import { loadWorkspace } from "../../../src/run/workspace.js";

const GiB = 2 ** 30;
const path = (file: string) => fileURLToPath(new URL(`../../../${file}`, import.meta.url));
const LAB = path("inventory/lab.yml");

/** The one play of an example, validated against the lab inventory, and the hosts it runs on. */
async function onlyPlay(file: string): Promise<{ play: Play; hosts: string[] }> {
  const { inventory, plays } = await loadWorkspace(LAB, [path(file)]);
  expect(plays).toHaveLength(1);
  const play = plays[0] as Play;
  const selected = selectHosts(inventory, play.hosts);
  return { play, hosts: "hosts" in selected ? [...selected.hosts].sort() : [] };
}

const policyOf = (play: Play, guest: string): ReclaimPolicy | undefined =>
  play.guests.find((g) => g.name === guest)?.policy;

describe("playbooks/ci-nightly.yml: a nightly CI policy", () => {
  it("runs on every lab hypervisor, half at a time, stopping once a quarter failed", async () => {
    const { play, hosts } = await onlyPlay("playbooks/ci-nightly.yml");
    expect(hosts).toEqual(["kvm01", "kvm02"]);
    expect(play).toMatchObject({ serial: { kind: "ratio", ratio: 0.5 }, maxFailPercentage: 25 });
  });

  it("never shuts a guest down, only trims inside, and keeps its thresholds high", async () => {
    const { play } = await onlyPlay("playbooks/ci-nightly.yml");
    const nightly: ReclaimPolicy = {
      ...DEFAULT_POLICY,
      minReclaimableBytes: 2 * GiB,
      minRatio: 0.2,
      zero: "trim",
      shutdown: "never",
      maxParallelPerHost: 1,
    };
    expect(play.policy).toEqual(nightly);
    expect(policyOf(play, "ci-runner-01")).toEqual(nightly);
    expect(policyOf(play, "ci-cache")).toEqual({ ...nightly, minReclaimableBytes: 8 * GiB });
  });

  it("reaches the runners through the guest agent and pins each guest to its hypervisor", async () => {
    const { play } = await onlyPlay("playbooks/ci-nightly.yml");
    expect(play.guests.map((g) => [g.name, g.host, g.access, g.disks.length])).toEqual([
      ["ci-runner-01", "kvm01", "agent", 1],
      ["ci-runner-02", "kvm02", "agent", 2],
      ["ci-cache", "kvm02", "ssh", 1],
    ]);
  });
});

describe("playbooks/one-off-reclaim.yml: a big one-off with a reviewed plan", () => {
  it("shuts guests down gracefully through libvirt, db02 with a longer timeout", async () => {
    const { play, hosts } = await onlyPlay("playbooks/one-off-reclaim.yml");
    expect(hosts).toEqual(["kvm01"]);
    const oneOff: ReclaimPolicy = {
      ...DEFAULT_POLICY,
      minReclaimableBytes: 10 * GiB,
      minRatio: 0.25,
      zero: "auto",
      fillReserve: { kind: "ratio", ratio: 0.05 },
      shutdown: "graceful",
      shutdownTimeoutMs: 600_000,
    };
    expect(policyOf(play, "db01")).toEqual(oneOff);
    expect(policyOf(play, "db02")).toEqual({ ...oneOff, shutdownTimeoutMs: 1_200_000 });
    for (const guest of play.guests)
      expect(guest.vm).toEqual({ manager: "libvirt", libvirtUri: "qemu:///system" });
    expect(play.guests.map((g) => g.access)).toEqual(["ssh", "agent"]);
  });

  it("shows the saved-plan flow in its header: plan --out for the pull request, then apply the file", () => {
    const text = readFileSync(path("playbooks/one-off-reclaim.yml"), "utf8");
    expect(text).toMatch(
      /^# +1\. reclaim plan -i inventory\/lab\.yml playbooks\/one-off-reclaim\.yml .*--out plan\.json$/m,
    );
    expect(text).toMatch(/^# +reclaim apply plan\.json$/m);
  });
});

describe("playbooks/fleet-discovery.yml: a discovery-based fleet policy", () => {
  it("discovers libvirt domains by name on every lab hypervisor, through the guest agent", async () => {
    const { play, hosts } = await onlyPlay("playbooks/fleet-discovery.yml");
    expect(hosts).toEqual(["kvm01", "kvm02"]);
    expect(play.guests).toEqual([]);
    expect(play.discover).toMatchObject({
      kind: "libvirt",
      include: ["web-*", "app-*"],
      exclude: ["*-canary", "web-legacy"],
      os: "linux",
      access: "agent",
      vm: { manager: "auto", libvirtUri: "qemu:///system" },
    });
    expect(play).toMatchObject({ serial: { kind: "ratio", ratio: 0.25 }, maxFailPercentage: 10 });
  });

  it("gives every discovered guest a policy that trims and never shuts down", async () => {
    const { play } = await onlyPlay("playbooks/fleet-discovery.yml");
    expect(play.policy).toEqual({
      ...DEFAULT_POLICY,
      minReclaimableBytes: GiB,
      minRatio: 0.15,
      zero: "trim",
      shutdown: "never",
    });
  });
});
