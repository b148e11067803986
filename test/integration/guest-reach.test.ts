/**
 * Reaching a guest whose address only its hypervisor can route to: the hypervisor is an sshd in one
 * network namespace, the "guest" an sshd in another that the machine running reclaim cannot reach.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Guest } from "../../src/config/model.js";
import { DEFAULT_VM } from "../../src/config/playbook.js";
import { openGuestTransport } from "../../src/run/guest-transport.js";
import type { SshContext } from "../../src/run/transports.js";
import { connectChain } from "../../src/transport/ssh/connect.js";
import { parseSshConfig, resolveSshSettings } from "../../src/transport/ssh/settings.js";
import { createSshTransport } from "../../src/transport/ssh/ssh-transport.js";
import type { Transport } from "../../src/transport/transport.js";
import { policy } from "../helpers/facts.js";
import { Lab, type NetnsLab, type SshdHost, TEST_USER, writeKnownHosts } from "../lab/sshd.js";

const lab = new Lab();
afterAll(() => lab.close(), 30_000);

let net: NetnsLab;
let hypervisorSshd: SshdHost;
let guestSshd: SshdHost;
let ssh: SshContext;
let hypervisor: Transport;

beforeAll(async () => {
  lab.user();
  const work = lab.tempDir("reclaim-guest-reach-");
  const key = lab.key("id_guest_reach");
  net = await lab.netns(`gr${process.pid.toString(36)}`);
  [hypervisorSshd, guestSshd] = (await Promise.all([
    lab.sshd({ netns: net.jumpNs, address: net.jumpAddress, authorizedKeys: [key.publicKey] }),
    lab.sshd({ netns: net.innerNs, address: net.innerAddress, authorizedKeys: [key.publicKey] }),
  ])) as [SshdHost, SshdHost];
  ssh = {
    config: parseSshConfig(`Host *\n  User ${TEST_USER}\n  IdentityFile ${key.privateKey}\n`),
    overrides: { knownHostsFile: writeKnownHosts(join(work, "known_hosts"), [hypervisorSshd, guestSshd]) },
  };
  const settings = resolveSshSettings(
    { alias: "kvm", address: hypervisorSshd.address, port: hypervisorSshd.port },
    ssh.config,
    ssh.overrides,
  );
  hypervisor = createSshTransport("kvm", await connectChain(settings));
  lab.defer(() => hypervisor.close());
}, 60_000);

function guest(jump?: string): Guest {
  return {
    name: "vm",
    os: "linux",
    access: "ssh",
    vm: DEFAULT_VM,
    disks: [],
    policy,
    source: { file: "pb.yml", line: 1, column: 1 },
    ssh: { host: guestSshd.address, port: guestSshd.port, ...(jump ? { jump } : {}) },
  };
}

/** The addresses of the network namespace the command ran in. */
async function addressesSeenBy(transport: Transport): Promise<string> {
  return (await transport.run({ argv: ["ip", "-o", "-4", "addr", "show"] })).stdout;
}

describe("reaching a guest", { timeout: 30_000 }, () => {
  it("goes through its hypervisor's connection by default", async () => {
    const opened = await openGuestTransport(guest(), hypervisor, ssh);
    if (!("transport" in opened)) throw new Error(opened.unreachable);
    try {
      expect(await addressesSeenBy(opened.transport)).toContain(net.innerAddress);
    } finally {
      await opened.transport.close();
    }
  });

  it("connects directly with jump: none, and reports a guest it cannot route to as unreachable", async () => {
    const started = performance.now();
    const opened = await openGuestTransport(guest("none"), hypervisor, ssh);
    expect(opened).toEqual({
      unreachable: expect.stringMatching(/^guest vm: .*EHOSTUNREACH|unreachable|No route/),
    });
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("takes jump hosts written as ProxyJump", async () => {
    const opened = await openGuestTransport(
      guest(`${TEST_USER}@${hypervisorSshd.address}:${hypervisorSshd.port}`),
      hypervisor,
      ssh,
    );
    if (!("transport" in opened)) throw new Error(opened.unreachable);
    try {
      expect(await addressesSeenBy(opened.transport)).toContain(net.innerAddress);
    } finally {
      await opened.transport.close();
    }
  });

  it("is refused when the guest's host key is unknown, as any host is", async () => {
    const strict: SshContext = {
      ...ssh,
      overrides: { knownHostsFile: writeKnownHosts(join(lab.tempDir(), "kh"), [hypervisorSshd]) },
    };
    const opened = await openGuestTransport(guest(), hypervisor, strict);
    expect("unreachable" in opened && opened.unreachable).toMatch(
      /host key for .* is not known \(ssh-ed25519 key SHA256:/,
    );
  });
});
