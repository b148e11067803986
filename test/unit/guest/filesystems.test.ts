import { describe, expect, it } from "vitest";
import { parseGuestFilesystems } from "../../../src/guest/filesystems.js";
import { fixture, result } from "../../helpers/results.js";

const parse = () =>
  parseGuestFilesystems(
    result(fixture("guest/proc-mounts.txt")),
    result(fixture("guest/df-P.txt")),
    result(fixture("guest/sys-discard.txt")),
  );

describe("the guest's filesystems", () => {
  it("keeps real writable filesystems once each, with sizes in bytes", () => {
    expect(parse().map((f) => [f.mount, f.type, f.availableBytes])).toEqual([
      ["/", "ext4", 13141508 * 1024],
      ["/data", "xfs", 41917440 * 1024],
      ["/home dir", "ext4", 8690612 * 1024],
    ]);
  });

  it("leaves out pseudo filesystems, read-only mounts, bind mounts and vfat", () => {
    const mounts = parse().map((f) => f.mount);
    for (const gone of ["/sys", "/proc", "/dev", "/run", "/srv/bind", "/mnt/ro", "/boot/efi"])
      expect(mounts).not.toContain(gone);
  });

  it("knows which devices pass discard, partitions and device-mapper names included", () => {
    expect(Object.fromEntries(parse().map((f) => [f.mount, f.discard]))).toEqual({
      "/": true,
      "/data": false,
      "/home dir": true,
    });
  });
});
