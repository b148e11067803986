import { describe, expect, it } from "vitest";
import {
  driveLetter,
  parseVolumes,
  retrimArgv,
  retrimUnsupported,
  sdeleteArgv,
} from "../../../src/guest/windows.js";

const decode = (argv: string[]) => Buffer.from(argv.at(-1) as string, "base64").toString("utf16le");

describe("Windows guests", () => {
  it("accepts drive letters in any case, with or without the colon", () => {
    expect(["c", "C", "c:", " D: "].map(driveLetter)).toEqual(["C:", "C:", "C:", "D:"]);
  });

  it.each(["1", "0", "41", "", "C:\\", "CD", "-z", "C: 1"])(
    "refuses %j, which sdelete could read as a physical disk or an option",
    (value) => {
      expect(() => driveLetter(value)).toThrow(RangeError);
    },
  );

  it("zeroes free space with -z and a drive letter with its colon, never -c", () => {
    const script = decode(sdeleteArgv("e"));
    expect(script).toContain("sdelete64.exe -accepteula -nobanner -z E:;");
    expect(script).not.toMatch(/ -c\b/);
  });

  it("sends every script encoded, so the command line holds only base64", () => {
    const argv = retrimArgv("C");
    expect(argv.slice(0, 4)).toEqual(["powershell", "-NoProfile", "-NonInteractive", "-EncodedCommand"]);
    expect(argv[4]).toMatch(/^[A-Za-z0-9+/=]+$/);
    expect(decode(argv)).toBe(
      "$ErrorActionPreference = 'Stop'; Optimize-Volume -DriveLetter C -ReTrim -Verbose",
    );
  });

  it("recognises a volume that cannot be retrimmed", () => {
    expect(
      retrimUnsupported(
        "Optimize-Volume : The volume optimization operation requested is not supported by the hardware backing the volume.",
      ),
    ).toBe(true);
    expect(retrimUnsupported("VERBOSE: Performing pass 1: Retrim:  100% complete.")).toBe(false);
  });

  it("reads Get-Volume's JSON for one volume and for several", () => {
    const one = '{"DriveLetter":"C","FileSystemType":"NTFS","Size":64424509440,"SizeRemaining":21474836480}';
    expect(parseVolumes(one)).toEqual([
      { drive: "C:", fileSystem: "NTFS", sizeBytes: 64424509440, freeBytes: 21474836480 },
    ]);
    expect(
      parseVolumes(`[${one},{"DriveLetter":"D","FileSystemType":"ReFS","Size":10,"SizeRemaining":5}]`).map(
        (v) => v.drive,
      ),
    ).toEqual(["C:", "D:"]);
  });
});
