import { describe, expect, it } from "vitest";
import type { Reserve } from "../../../src/config/model.js";
import { applyZeroGuest, checkZeroGuest, decideZero } from "../../../src/tasks/zero-guest.js";
import type { CommandSpec, Transport } from "../../../src/transport/transport.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const reserve: Reserve = { kind: "ratio", ratio: 0.05 };

/** The PowerShell script inside an -EncodedCommand argv. */
const script = (argv: readonly string[]) => Buffer.from(argv.at(-1) as string, "base64").toString("utf16le");

/** A Windows guest over OpenSSH: answers by what the PowerShell script does. */
function windowsGuest(answers: { volumes?: string; retrim?: { exitCode: number; output: string } }) {
  const ran: string[] = [];
  const transport: Transport = {
    host: "win",
    run: async (spec: CommandSpec) => {
      expect(spec.argv.slice(0, 4)).toEqual([
        "powershell",
        "-NoProfile",
        "-NonInteractive",
        "-EncodedCommand",
      ]);
      const text = script(spec.argv);
      ran.push(text);
      const answer = text.includes("Get-Volume")
        ? { exitCode: 0, output: answers.volumes ?? "[]" }
        : text.includes("Optimize-Volume")
          ? (answers.retrim ?? { exitCode: 0, output: "" })
          : { exitCode: 0, output: "" };
      return {
        argv: spec.argv,
        exitCode: answer.exitCode,
        signal: null,
        stdout: answer.output,
        stderr: "",
        durationMs: 1,
        timedOut: false,
      };
    },
    close: async () => {},
  };
  return { transport, ran };
}

const volumes = JSON.stringify([
  { DriveLetter: "C", FileSystemType: "NTFS", Size: 40 * GiB, SizeRemaining: 10 * GiB },
  { DriveLetter: "E", FileSystemType: "NTFS", Size: 20 * GiB, SizeRemaining: 15 * GiB },
  { DriveLetter: "F", FileSystemType: "FAT32", Size: 1 * GiB, SizeRemaining: 1 * GiB },
]);

describe("freeing blocks inside a Windows guest", () => {
  it("plans a retrim of each NTFS volume by drive letter, leaving FAT volumes alone", async () => {
    const { transport } = windowsGuest({ volumes });
    const plan = await checkZeroGuest(transport, "win", "auto", reserve, {}, "windows");
    expect(plan.os).toBe("windows");
    expect(plan.steps).toEqual([
      { kind: "trim", mount: "C:" },
      { kind: "trim", mount: "E:" },
    ]);
  });

  it("sizes an sdelete fill as the whole free space, since sdelete keeps no reserve", () => {
    const fs = {
      mount: "C:",
      device: "C:",
      type: "NTFS",
      sizeBytes: 40 * GiB,
      usedBytes: 30 * GiB,
      availableBytes: 10 * GiB,
      discard: true,
    };
    const plan = decideZero("win", [fs], "fill", reserve, {}, "windows");
    expect(plan.steps).toEqual([{ kind: "fill", mount: "C:", mib: 10 * 1024 }]);
    expect(plan.fillBytes).toBe(10 * GiB);
  });

  it("does not plan an sdelete the hypervisor has no room for", () => {
    const fs = {
      mount: "C:",
      device: "C:",
      type: "NTFS",
      sizeBytes: 40 * GiB,
      usedBytes: 30 * GiB,
      availableBytes: 10 * GiB,
      discard: true,
    };
    const plan = decideZero("win", [fs], "fill", reserve, { roomBytes: 2 * GiB }, "windows");
    expect(plan.steps[0]).toMatchObject({ kind: "skip", mount: "C:" });
  });

  it("zeroes with sdelete -z on the drive letter when the volume refuses a retrim (zero: auto)", async () => {
    const { transport } = windowsGuest({ volumes });
    const plan = await checkZeroGuest(transport, "win", "auto", reserve, {}, "windows");
    const guest = windowsGuest({
      retrim: {
        exitCode: 1,
        output:
          "Optimize-Volume : The operation requested is not supported by the hardware backing the volume.",
      },
    });
    const outcomes = await applyZeroGuest(plan, guest.transport);
    expect(guest.ran.filter((t) => t.includes("sdelete64.exe"))).toEqual([
      expect.stringContaining("-z C:;"),
      expect.stringContaining("-z E:;"),
    ]);
    expect(outcomes.map((o) => [o.mount, o.kind, o.ok, o.bytes])).toEqual([
      ["C:", "fill", true, 10 * GiB],
      ["E:", "fill", true, 15 * GiB],
    ]);
    expect(outcomes[0]?.message).toMatch(/does not support retrim; zeroed the free space with sdelete -z/);
  });

  it("reports a refused retrim with zero: trim instead of writing zeros", async () => {
    const { transport } = windowsGuest({ volumes });
    const plan = await checkZeroGuest(transport, "win", "trim", reserve, {}, "windows");
    const guest = windowsGuest({ retrim: { exitCode: 1, output: "not supported by the hardware" } });
    const outcomes = await applyZeroGuest(plan, guest.transport);
    expect(guest.ran.some((t) => t.includes("sdelete"))).toBe(false);
    expect(outcomes.every((o) => o.kind === "trim" && !o.ok)).toBe(true);
  });

  it("counts a successful retrim as done without sdelete", async () => {
    const { transport } = windowsGuest({ volumes });
    const plan = await checkZeroGuest(transport, "win", "auto", reserve, {}, "windows");
    const guest = windowsGuest({});
    const outcomes = await applyZeroGuest(plan, guest.transport);
    expect(guest.ran).toEqual([
      expect.stringContaining("Optimize-Volume -DriveLetter C -ReTrim"),
      expect.stringContaining("Optimize-Volume -DriveLetter E -ReTrim"),
    ]);
    expect(outcomes.map((o) => [o.kind, o.ok])).toEqual([
      ["trim", true],
      ["trim", true],
    ]);
  });
});
