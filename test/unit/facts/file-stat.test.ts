import { describe, expect, it } from "vitest";
import { parseFileStat } from "../../../src/facts/file-stat.js";
import { parseFsFree } from "../../../src/facts/fs-free.js";
import { result } from "../../helpers/results.js";

describe("file status parsing", () => {
  it("reads identity, sizes and ownership", () => {
    expect(
      parseFileStat(result("regular file|2049|131|420675584|821640|512|64055|64055|600|1795592622|1\n")),
    ).toEqual({
      exists: true,
      type: "file",
      device: 2049,
      inode: 131,
      size: 420675584,
      allocated: 821640 * 512,
      uid: 64055,
      gid: 64055,
      mode: "600",
      mtimeSec: 1795592622,
      links: 1,
    });
  });

  it("tells a symbolic link from the file it points at", () => {
    expect(parseFileStat(result("symbolic link|2049|5|12|0|512|0|0|777|1|1\n"))).toMatchObject({
      type: "symlink",
    });
  });

  it("reports a missing file as absent rather than failing", () => {
    expect(parseFileStat(result("", 1, "stat: cannot statx '/x': No such file or directory"))).toEqual({
      exists: false,
    });
  });

  it("fails on other errors", () => {
    expect(() => parseFileStat(result("", 1, "stat: cannot statx '/x': Permission denied"))).toThrow(
      /Permission denied/,
    );
  });
});

describe("free space parsing", () => {
  it("multiplies available blocks by the block size", () => {
    expect(parseFsFree(result("6171021|4096|ext2/ext3\n"))).toEqual({ availableBytes: 6171021 * 4096 });
  });
});
