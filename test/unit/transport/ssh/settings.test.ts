import { homedir } from "node:os";
import { describe, expect, it } from "vitest";
import { parseSshConfig, resolveSshSettings } from "../../../../src/transport/ssh/settings.js";
import { remoteCommand } from "../../../../src/transport/ssh/ssh-transport.js";

const config = parseSshConfig(`
Host kvm*
  HostName %h.lab.example
  User ops
  Port 2222
  IdentityFile ~/.ssh/lab_ed25519
  ProxyJump bastion-user@bastion:2200,inner
  StrictHostKeyChecking accept-new
  UserKnownHostsFile ~/.ssh/lab_known_hosts

Host inner
  HostName 10.1.2.3
  User jumper

Host *
  User fallback
  ConnectTimeout 4
  Match exec "touch /tmp/reclaim-must-not-run"
`);

describe("resolving how to reach a host over SSH", () => {
  it("takes HostName, User, Port, IdentityFile and known_hosts from the first matching Host", () => {
    const s = resolveSshSettings({ alias: "kvm01", address: "kvm01" }, config);
    expect(s).toMatchObject({
      hostname: "kvm01.lab.example",
      user: "ops",
      port: 2222,
      identityFiles: [`${homedir()}/.ssh/lab_ed25519`],
      strictHostKeyChecking: "accept-new",
      knownHostsFiles: [`${homedir()}/.ssh/lab_known_hosts`],
      connectTimeoutMs: 4000,
    });
  });

  it("lets inventory variables win over the config, as Ansible passes them to ssh", () => {
    const s = resolveSshSettings(
      { alias: "kvm01", address: "kvm01", port: 22, user: "root", privateKeyFile: "/keys/k" },
      config,
    );
    expect(s).toMatchObject({ port: 22, user: "root", identityFiles: ["/keys/k"] });
  });

  it("resolves every ProxyJump hop with its own config", () => {
    const s = resolveSshSettings({ alias: "kvm01", address: "kvm01" }, config);
    expect(s.jumps.map((j) => `${j.user}@${j.hostname}:${j.port}`)).toEqual([
      "bastion-user@bastion:2200",
      "jumper@10.1.2.3:22",
    ]);
  });

  it("refuses unknown host keys unless told otherwise", () => {
    expect(resolveSshSettings({ alias: "x", address: "other" }, undefined).strictHostKeyChecking).toBe("yes");
  });

  it("treats a config's StrictHostKeyChecking no as accept-new: a changed key is never accepted silently", () => {
    const lax = parseSshConfig("Host *\n  StrictHostKeyChecking no\n");
    expect(resolveSshSettings({ alias: "x", address: "x" }, lax).strictHostKeyChecking).toBe("accept-new");
  });

  it("lets the command line override known_hosts and checking", () => {
    const s = resolveSshSettings({ alias: "kvm01", address: "kvm01" }, config, {
      knownHostsFile: "/tmp/kh",
      strictHostKeyChecking: "no",
    });
    expect(s).toMatchObject({ knownHostsFiles: ["/tmp/kh"], strictHostKeyChecking: "no" });
  });
});

describe("the remote command line", () => {
  it("quotes every argument and runs in the C locale", () => {
    expect(remoteCommand({ argv: ["stat", "--", "/images/my vm's disk.qcow2"] })).toBe(
      "LC_ALL=C exec stat -- '/images/my vm'\\''s disk.qcow2'",
    );
  });

  it("puts a timeout on the remote side, so the command dies there too", () => {
    expect(remoteCommand({ argv: ["qemu-img", "info", "/a"], timeoutMs: 30_500 })).toBe(
      "LC_ALL=C exec timeout -k 5 31 qemu-img info /a",
    );
  });
});
