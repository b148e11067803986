import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  fingerprint,
  hostKeyAlgorithmsFor,
  keysFor,
  knownHostsLine,
  knownHostsName,
  parseKnownHosts,
  verifyHostKey,
} from "../../../../src/transport/ssh/known-hosts.js";

const fixture = (name: string) =>
  readFileSync(new URL(`../../../fixtures/known-hosts/${name}`, import.meta.url), "utf8");
const blob = (name: string) => Buffer.from(fixture(name).trim().split(" ")[1] as string, "base64");
const key1 = blob("key1.pub");
const key2 = blob("key2.pub");

describe("known_hosts", () => {
  it("names non-standard ports as [host]:port, as ssh does", () => {
    expect(knownHostsName("kvm01", 22)).toBe("kvm01");
    expect(knownHostsName("127.0.0.2", 2222)).toBe("[127.0.0.2]:2222");
  });

  it("prints fingerprints the way ssh-keygen -l does", () => {
    expect(fingerprint(key1)).toBe("SHA256:/Gej95YpefRy4MF9RizjXaqlA9ib3jbeLEaP+dvin/g");
  });

  it("matches entries hashed by ssh-keygen -H, with and without a port", () => {
    const entries = parseKnownHosts(fixture("hashed"));
    expect(verifyHostKey(entries, "[127.0.0.2]:2222", key1)).toEqual({ kind: "known", line: 1 });
    expect(verifyHostKey(entries, "kvm01.example", key1)).toEqual({ kind: "known", line: 2 });
    expect(verifyHostKey(entries, "127.0.0.2", key1)).toEqual({ kind: "unknown" });
  });

  it("reports a different key for a known host as changed, naming what was expected", () => {
    const verdict = verifyHostKey(parseKnownHosts(fixture("hashed")), "kvm01.example", key2);
    expect(verdict.kind).toBe("changed");
    expect(verdict.kind === "changed" && verdict.expected.map((k) => k.line)).toEqual([2]);
  });

  it("honours wildcards and negations in host patterns", () => {
    const entries = parseKnownHosts(fixture("plain"));
    expect(verifyHostKey(entries, "kvm01.lab", key1).kind).toBe("known");
    expect(verifyHostKey(entries, "kvm09.lab", key1).kind).toBe("unknown");
  });

  it("refuses a revoked key even where another entry would accept it", () => {
    expect(verifyHostKey(parseKnownHosts(fixture("plain")), "plain.example", key2)).toEqual({
      kind: "revoked",
      line: 3,
    });
  });

  it("ignores certificate authorities and comments", () => {
    expect(keysFor(parseKnownHosts(fixture("plain")), "x.example")).toEqual([]);
  });

  it("writes lines that it reads back, hashed or not", () => {
    for (const hashed of [false, true]) {
      const entries = parseKnownHosts(`${knownHostsLine("[10.0.0.1]:2200", key1, hashed)}\n`);
      expect(verifyHostKey(entries, "[10.0.0.1]:2200", key1).kind).toBe("known");
      expect(verifyHostKey(entries, "10.0.0.1", key1).kind).toBe("unknown");
    }
  });

  it("offers only the key types on record, all RSA signature kinds for an RSA key", () => {
    expect(
      hostKeyAlgorithmsFor([
        { type: "ssh-rsa", blob: key1, revoked: false, line: 1 },
        { type: "ssh-ed25519", blob: key1, revoked: false, line: 2 },
      ]),
    ).toEqual(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", "ssh-ed25519"]);
  });
});
