import { describe, expect, it } from "vitest";
import { compareArgv, convertArgv, parseConvertProgress } from "../../../src/tasks/host-commands.js";

const spec = {
  sourceFormat: "qcow2",
  targetFormat: "qcow2" as const,
  options: ["compat=1.1", "lazy_refcounts=on"],
  bitmaps: true,
  compress: false,
  keepBackup: false,
};

describe("host commands", () => {
  it("converts with explicit formats, the original's options and bitmaps, and never -U", () => {
    const argv = convertArgv(spec, "/i/a.qcow2", "/i/.a.qcow2.reclaim-tmp");
    expect(argv).toEqual([
      "qemu-img",
      "convert",
      "-p",
      "-f",
      "qcow2",
      "-O",
      "qcow2",
      "-o",
      "compat=1.1,lazy_refcounts=on",
      "--bitmaps",
      "/i/a.qcow2",
      "/i/.a.qcow2.reclaim-tmp",
    ]);
    expect(argv).not.toContain("-U");
  });

  it("compresses only when asked", () => {
    expect(convertArgv({ ...spec, compress: true }, "/a", "/b")).toContain("-c");
    expect(convertArgv(spec, "/a", "/b")).not.toContain("-c");
  });

  it("compares without strict mode, which would fail on the reclaimed allocation", () => {
    expect(compareArgv("qcow2", "/a", "/b")).not.toContain("-s");
  });

  it("reads the last percentage from convert's progress output", () => {
    expect(parseConvertProgress("    (0.00/100%)\r    (12.50/100%)\r")).toBe(12.5);
    expect(parseConvertProgress("nothing here")).toBeUndefined();
  });
});
