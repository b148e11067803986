import { describe, expect, it } from "vitest";
import { imageProbe, isLockFailure, parseImageInfo } from "../../../src/facts/image-info.js";
import { parseImageMeasure } from "../../../src/facts/image-measure.js";
import { fixture, result } from "../../helpers/results.js";

describe("qemu-img info parsing", () => {
  it("reads format, sizes and the qcow2 options a rewrite must carry over", () => {
    const info = parseImageInfo(result(fixture("qemu-img/info-plain.json")));
    expect(info).toMatchObject({
      format: "qcow2",
      virtualSize: 1073741824,
      snapshots: [],
      encrypted: false,
      dirty: false,
      corrupt: false,
    });
    expect(info.options).toEqual({
      compat: "1.1",
      clusterSize: 65536,
      lazyRefcounts: false,
      compressionType: "zlib",
      extendedL2: false,
      refcountBits: 16,
    });
    expect(info.backingFile).toBeUndefined();
  });

  it("names internal snapshots and persistent bitmaps", () => {
    const info = parseImageInfo(result(fixture("qemu-img/info-snapshots-bitmaps.json")));
    expect(info.snapshots).toEqual(["snap1"]);
    expect(info.bitmaps).toEqual(["bm0"]);
    expect(info.options.lazyRefcounts).toBe(true);
    expect(info.options.clusterSize).toBe(131072);
  });

  it("sees a backing file", () => {
    expect(parseImageInfo(result(fixture("qemu-img/info-backing.json"))).backingFile).toBe("s.qcow2");
  });

  it("sees encryption", () => {
    expect(parseImageInfo(result(fixture("qemu-img/info-encrypted.json"))).encrypted).toBe(true);
  });

  it("reports raw images with no qcow2 options", () => {
    const info = parseImageInfo(result(fixture("qemu-img/info-raw.json")));
    expect(info.format).toBe("raw");
    expect(info.options).toEqual({});
  });

  it("turns a failed command into an error with qemu-img's message", () => {
    expect(() =>
      parseImageInfo(result("", 1, "qemu-img: Could not open '/x': No such file or directory")),
    ).toThrow(/No such file/);
  });
});

describe("the in-use probe", () => {
  const locked = fixture("qemu-img/info-locked.stderr");

  it("recognises the lock a running QEMU holds", () => {
    expect(isLockFailure(locked)).toBe(true);
    expect(imageProbe.parse(result("", 1, locked), { path: "/a" })).toMatchObject({ inUse: true });
  });

  it("opens the image without -U, so that a lock makes it fail", () => {
    expect(imageProbe.argv({ path: "/a.qcow2" })).not.toContain("-U");
  });

  it("reports an unlocked image as not in use, with its facts", () => {
    const probe = imageProbe.parse(result(fixture("qemu-img/info-plain.json")), { path: "/a" });
    expect(probe.inUse).toBe(false);
  });
});

describe("qemu-img measure parsing", () => {
  it("reads the required size and the bitmaps' share", () => {
    expect(parseImageMeasure(result(fixture("qemu-img/measure-bitmaps.json")))).toEqual({
      required: 327680,
      fullyAllocated: 105185280,
      bitmaps: 196608,
    });
  });
});
