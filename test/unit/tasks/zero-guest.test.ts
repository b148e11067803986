import { describe, expect, it } from "vitest";
import type { GuestFilesystem } from "../../../src/guest/filesystems.js";
import { applyZeroGuest, decideZero } from "../../../src/tasks/zero-guest.js";
import type { CommandSpec, Transport } from "../../../src/transport/transport.js";

const MiB = 1024 * 1024;
const fs = (mount: string, discard: boolean, availMiB = 900): GuestFilesystem => ({
  mount,
  device: "/dev/vdb",
  type: "ext4",
  sizeBytes: 1000 * MiB,
  usedBytes: (1000 - availMiB) * MiB,
  availableBytes: availMiB * MiB,
  discard,
});
const reserve = { kind: "ratio" as const, ratio: 0.05 };

/** A guest that answers each command by the first key its command line contains; records what ran. */
function scripted(answers: Record<string, { exitCode: number; stdout: string }>): {
  transport: Transport;
  ran: string[];
} {
  const ran: string[] = [];
  const transport: Transport = {
    host: "vm",
    run: async (spec: CommandSpec) => {
      const key = spec.argv.join(" ");
      ran.push(key);
      const a = Object.entries(answers).find(([k]) => key.includes(k))?.[1] ?? { exitCode: 0, stdout: "" };
      return {
        argv: spec.argv,
        exitCode: a.exitCode,
        signal: null,
        stdout: a.stdout,
        stderr: "",
        durationMs: 1,
        timedOut: false,
      };
    },
    close: async () => {},
  };
  return { transport, ran };
}

describe("deciding how to free a guest's blocks", () => {
  it("trims where discard reaches the disk and fills elsewhere, with zero: auto", () => {
    const plan = decideZero("vm", [fs("/", true), fs("/data", false)], "auto", reserve);
    expect(plan.steps).toEqual([
      { kind: "trim", mount: "/" },
      { kind: "fill", mount: "/data", mib: 850 },
    ]);
    expect(plan.fillBytes).toBe(850 * MiB);
  });

  it("never trims where it would free nothing, with zero: trim", () => {
    const [step] = decideZero("vm", [fs("/data", false)], "trim", reserve).steps;
    expect(step).toMatchObject({ kind: "skip", reason: expect.stringMatching(/does not pass discard/) });
  });

  it("fills every filesystem with zero: fill, and nothing with zero: none", () => {
    expect(decideZero("vm", [fs("/", true)], "fill", reserve).steps).toEqual([
      { kind: "fill", mount: "/", mib: 850 },
    ]);
    expect(decideZero("vm", [fs("/", true)], "none", reserve).steps.map((s) => s.kind)).toEqual(["skip"]);
  });
});

describe("freeing a guest's blocks", () => {
  it("removes an old fill file first, then trims and fills, reporting the bytes", async () => {
    const plan = {
      ...decideZero("vm", [fs("/", true), fs("/data", false)], "auto", reserve),
      leftovers: ["/data"],
    };
    const { transport, ran } = scripted({
      fstrim: { exitCode: 0, stdout: "/: 1 GiB (1073741824 bytes) trimmed\n" },
      "dd if=/dev/zero": { exitCode: 0, stdout: "891289600 bytes (891 MB, 850 MiB) copied, 4 s, 220 MB/s\n" },
    });
    const outcomes = await applyZeroGuest(plan, transport);
    expect(ran[0]).toBe("rm -f -- /data/.reclaim-zero-fill");
    expect(outcomes.map((o) => [o.mount, o.kind, o.ok, o.bytes])).toEqual([
      ["/", "trim", true, 1073741824],
      ["/data", "fill", true, 891289600],
    ]);
  });

  it("counts a fill cut short by a full filesystem as done, with what it wrote", async () => {
    const plan = decideZero("vm", [fs("/data", false)], "fill", reserve);
    const { transport } = scripted({
      "dd if=/dev/zero": {
        exitCode: 1,
        stdout:
          "dd: error writing '/data/.reclaim-zero-fill': No space left on device\n104857600 bytes (105 MB, 100 MiB) copied, 0.5 s\n",
      },
    });
    const [outcome] = await applyZeroGuest(plan, transport);
    expect(outcome).toMatchObject({
      ok: true,
      bytes: 104857600,
      message: expect.stringMatching(/filled up after 100 MiB/),
    });
  });
});

describe("zero: auto", () => {
  const answers = {
    fstrim: { exitCode: 0, stdout: "/data: 300 MiB (314572800 bytes) trimmed\n" },
    "dd if=/dev/zero": { exitCode: 0, stdout: "850+0 records in\n850+0 records out\n" },
  };
  it("fills instead when the host's image did not shrink after a trim the guest reported", async () => {
    const plan = decideZero("vm", [fs("/data", true)], "auto", reserve);
    const { transport, ran } = scripted(answers);
    const allocations = [500 * MiB, 499 * MiB];
    const [outcome] = await applyZeroGuest(plan, transport, undefined, async () => allocations.shift() ?? 0);
    expect(ran.some((c) => c.includes("dd if=/dev/zero"))).toBe(true);
    expect(outcome).toMatchObject({ kind: "fill", ok: true, bytes: 850 * MiB });
    expect(outcome?.message).toMatch(
      /host's image gave back only 1 MiB .*filled instead: wrote 850 MiB of zeros/,
    );
  });

  it("keeps the trim when the host saw the space come back", async () => {
    const plan = decideZero("vm", [fs("/data", true)], "auto", reserve);
    const { transport, ran } = scripted(answers);
    const allocations = [500 * MiB, 210 * MiB];
    const [outcome] = await applyZeroGuest(plan, transport, undefined, async () => allocations.shift() ?? 0);
    expect(ran.some((c) => c.includes("dd if=/dev/zero"))).toBe(false);
    expect(outcome).toMatchObject({ kind: "trim", bytes: 314572800 });
  });

  it("does not second-guess an explicit zero: trim", async () => {
    const plan = decideZero("vm", [fs("/data", true)], "trim", reserve);
    const { transport, ran } = scripted(answers);
    await applyZeroGuest(plan, transport, undefined, async () => 500 * MiB);
    expect(ran.some((c) => c.includes("dd if=/dev/zero"))).toBe(false);
  });
});
