import { describe, expect, it } from "vitest";
import { globToRegExp } from "../../../src/inventory/glob.js";
import { selectHosts } from "../../../src/inventory/pattern.js";
import { loadFixture } from "./fixture.js";

// Hosts in inventory order: localhost, kvm04, kvm01, kvm02, kvm03, nas01.
// hypervisors: kvm04 + lab (kvm01..kvm03); storage: nas01, kvm04.
const inventory = loadFixture("hypervisors.yml");
const select = (pattern: string) => selectHosts(inventory, pattern);

describe("selectHosts", () => {
  it("selects every host with all or *", () => {
    const every = { hosts: ["localhost", "kvm04", "kvm01", "kvm02", "kvm03", "nas01"] };
    expect(select("all")).toEqual(every);
    expect(select("*")).toEqual(every);
  });

  it("selects a group's hosts, its child groups' included", () => {
    expect(select("hypervisors")).toEqual({ hosts: ["kvm04", "kvm01", "kvm02", "kvm03"] });
    expect(select("lab")).toEqual({ hosts: ["kvm01", "kvm02", "kvm03"] });
  });

  it("selects a host by name", () => {
    expect(select("kvm02")).toEqual({ hosts: ["kvm02"] });
  });

  it("matches wildcards against host and group names", () => {
    expect(select("kvm0*")).toEqual({ hosts: ["kvm04", "kvm01", "kvm02", "kvm03"] });
    expect(select("kvm0?")).toEqual({ hosts: ["kvm04", "kvm01", "kvm02", "kvm03"] });
    expect(select("kvm0[12]")).toEqual({ hosts: ["kvm01", "kvm02"] });
    expect(select("kvm0[!12]")).toEqual({ hosts: ["kvm04", "kvm03"] });
    expect(select("stor*")).toEqual({ hosts: ["kvm04", "nas01"] });
  });

  it("takes the union of terms joined by : or , and keeps inventory order", () => {
    expect(select("nas01:lab")).toEqual({ hosts: ["kvm01", "kvm02", "kvm03", "nas01"] });
    expect(select("nas01,kvm01")).toEqual({ hosts: ["kvm01", "nas01"] });
    expect(select(" nas01 , kvm01 ")).toEqual({ hosts: ["kvm01", "nas01"] });
  });

  it("intersects with &group", () => {
    expect(select("hypervisors:&storage")).toEqual({ hosts: ["kvm04"] });
  });

  it("excludes with !name, where the name may be a host, a group or a wildcard", () => {
    expect(select("hypervisors:!kvm03")).toEqual({ hosts: ["kvm04", "kvm01", "kvm02"] });
    expect(select("hypervisors:!lab")).toEqual({ hosts: ["kvm04"] });
    expect(select("all:!kvm0*")).toEqual({ hosts: ["localhost", "nas01"] });
  });

  it("combines union, intersection and exclusion: hypervisors:&lab:!kvm03", () => {
    expect(select("hypervisors:&lab:!kvm03")).toEqual({ hosts: ["kvm01", "kvm02"] });
  });

  it("takes unions first, then intersections, then exclusions, whatever the order written", () => {
    expect(select("!kvm03:&lab:hypervisors")).toEqual({ hosts: ["kvm01", "kvm02"] });
    expect(select("lab:!kvm01:kvm01")).toEqual({ hosts: ["kvm02", "kvm03"] });
  });

  it("starts from all when there are only exclusions and intersections", () => {
    expect(select("!hypervisors")).toEqual({ hosts: ["localhost", "nas01"] });
    expect(select("&storage")).toEqual({ hosts: ["kvm04", "nas01"] });
  });

  it("accepts a group that exists but holds no host, selecting nothing", () => {
    const spare = { name: "spare", hosts: [], children: [], vars: {} };
    expect(selectHosts({ ...inventory, groups: [...inventory.groups, spare] }, "spare")).toEqual({
      hosts: [],
    });
  });

  it("refuses a term that matches no host or group", () => {
    expect(select("kvm09")).toEqual({ error: "pattern 'kvm09' matches no host or group in hypervisors.yml" });
    expect(select("web*:!lab")).toEqual({
      error: "pattern 'web*' matches no host or group in hypervisors.yml",
    });
    expect(select("lab:!kvm09:&db")).toEqual({
      error:
        "pattern 'kvm09' matches no host or group in hypervisors.yml; pattern 'db' matches no host or group in hypervisors.yml",
    });
  });

  it("refuses an empty pattern, a bare ! or &, and a wildcard it cannot read", () => {
    expect(select("")).toEqual({ error: "the host pattern is empty" });
    expect(select(" : ")).toEqual({ error: "the host pattern is empty" });
    expect(select("lab:!")).toEqual({ error: "'!' must be followed by a host or group name" });
    expect(select("kvm[9-1]")).toEqual({ error: "pattern 'kvm[9-1]' is not a valid wildcard" });
  });
});

describe("globToRegExp", () => {
  it("reads wildcards as Python's fnmatch does", () => {
    const matches = (glob: string, name: string) => globToRegExp(glob)?.test(name);
    expect(matches("kvm*", "kvm01.lab")).toBe(true);
    expect(matches("kvm?", "kvm01")).toBe(false);
    expect(matches("kvm[0-1]1", "kvm11")).toBe(true);
    expect(matches("[]]x", "]x")).toBe(true);
    expect(matches("a[b", "a[b")).toBe(true);
    expect(matches("10.0.0.*", "10.0.0.7")).toBe(true);
    expect(matches("10.0.0.*", "10a0b0c7")).toBe(false);
    expect(matches("KVM*", "kvm01")).toBe(false);
  });
});
