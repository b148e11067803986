import { describe, expect, it } from "vitest";
import { expandHostPattern, MAX_HOSTS_PER_PATTERN } from "../../../src/inventory/host-range.js";

describe("expandHostPattern", () => {
  it("expands kvm[01:03] into three hosts, keeping the zero padding", () => {
    expect(expandHostPattern("kvm[01:03]")).toEqual({ names: ["kvm01", "kvm02", "kvm03"] });
  });

  it("counts from 0 when a range has no begin, and by the step when it has one", () => {
    expect(expandHostPattern("web[:2]")).toEqual({ names: ["web0", "web1", "web2"] });
    expect(expandHostPattern("web[1:9:4]")).toEqual({ names: ["web1", "web5", "web9"] });
  });

  it("expands letter ranges and multiplies several ranges out, with text around them", () => {
    expect(expandHostPattern("db-[a:b]-[1:2].lab")).toEqual({
      names: ["db-a-1.lab", "db-a-2.lab", "db-b-1.lab", "db-b-2.lab"],
    });
  });

  it("takes the port from a trailing :number, also after a range", () => {
    expect(expandHostPattern("kvm01:2222")).toEqual({ names: ["kvm01"], port: 2222 });
    expect(expandHostPattern("kvm[1:2]:2222")).toEqual({ names: ["kvm1", "kvm2"], port: 2222 });
  });

  it("leaves an IPv6 address whole, with no port", () => {
    expect(expandHostPattern("fe80::1")).toEqual({ names: ["fe80::1"] });
  });

  it.each([
    ["kvm01:", "host pattern 'kvm01:': expected a port number after ':'"],
    [":22", "host pattern ':22' has no host name"],
    ["kvm[01]", "host pattern 'kvm[01]': a range must be [begin:end] or [begin:end:step]"],
    ["kvm[01:", "host pattern 'kvm[01:': '[' without a closing ']'"],
    ["kvm[1:]", "host pattern 'kvm[1:]': a range needs an end value"],
    ["kvm[3:1]", "host pattern 'kvm[3:1]': a range must not end before it begins"],
    ["kvm[c:a]", "host pattern 'kvm[c:a]': a range must not end before it begins"],
    ["kvm[1:3:0]", "host pattern 'kvm[1:3:0]': a range's step must be a whole number above 0"],
    ["kvm[a:3]", "host pattern 'kvm[a:3]': a range's bounds must be both numbers or both letters"],
    ["kvm[01:100]", "host pattern 'kvm[01:100]': a zero-padded range needs begin and end of the same width"],
  ])("refuses %s", (pattern, error) => {
    expect(expandHostPattern(pattern)).toEqual({ error });
  });

  it("refuses a range that would create more hosts than any inventory holds", () => {
    const tooMany = `host pattern 'kvm[1:100000000]': expands to more than ${MAX_HOSTS_PER_PATTERN} hosts`;
    expect(expandHostPattern("kvm[1:100000000]")).toEqual({ error: tooMany });
    expect(expandHostPattern("kvm[1:200]-[1:200]")).toEqual({
      error: `host pattern 'kvm[1:200]-[1:200]': expands to more than ${MAX_HOSTS_PER_PATTERN} hosts`,
    });
  });
});
