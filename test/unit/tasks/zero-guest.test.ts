import { describe, expect, it } from "vitest";
import type { GuestFilesystem } from "../../../src/guest/filesystems.js";
import { applyZeroGuest, decideZero } from "../../../src/tasks/zero-guest.js";
import { scripted } from "../../helpers/transport.js";

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
    expect(ran[0]).toMatch(/^sh -c for m in .*rm -f -- "\$m\/\.reclaim-zero-fill".* \/data$/s);
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

describe("the hypervisor's room for a fill", () => {
  it("skips a fill larger than the room, naming the fill and the room", () => {
    const plan = decideZero("vm", [fs("/data", false)], "fill", reserve, { roomBytes: 500 * MiB });
    expect(plan.steps).toEqual([
      {
        kind: "skip",
        mount: "/data",
        reason:
          "a fill of 850 MiB could grow the image by as much, and the hypervisor has room for 500 MiB beside it; not filled",
      },
    ]);
    expect(plan.fillBytes).toBe(0);
    expect(plan.hostRoomBytes).toBe(500 * MiB);
  });

  it("shares the room among the filesystems in order, so a later small fill may still fit", () => {
    const plan = decideZero(
      "vm",
      [fs("/", false), fs("/data", false), fs("/srv", false, 150)],
      "fill",
      reserve,
      { roomBytes: 1000 * MiB },
    );
    expect(plan.steps).toEqual([
      { kind: "fill", mount: "/", mib: 850 },
      {
        kind: "skip",
        mount: "/data",
        reason:
          "a fill of 850 MiB could grow the image by as much, and the hypervisor has room for 150 MiB beside it; not filled",
      },
      { kind: "fill", mount: "/srv", mib: 100 },
    ]);
    expect(plan.fillBytes).toBe(950 * MiB);
  });

  it("fills a filesystem exactly as large as the room", () => {
    const plan = decideZero("vm", [fs("/", false)], "fill", reserve, { roomBytes: 850 * MiB });
    expect(plan.steps).toEqual([{ kind: "fill", mount: "/", mib: 850 }]);
  });

  it("leaves the plan without a room when the host side gave none", () => {
    expect(decideZero("vm", [fs("/", false)], "fill", reserve)).not.toHaveProperty("hostRoomBytes");
  });
});

describe("zero: auto and libvirt's discard setting", () => {
  it("fills instead of trimming when the host says discards stop short of the images", () => {
    const plan = decideZero("vm", [fs("/", true)], "auto", reserve, { discardReachesImages: false });
    expect(plan.steps).toEqual([{ kind: "fill", mount: "/", mib: 850 }]);
  });

  it("trims when the host says discards reach the images", () => {
    const plan = decideZero("vm", [fs("/", true)], "auto", reserve, { discardReachesImages: true });
    expect(plan.steps).toEqual([{ kind: "trim", mount: "/" }]);
  });

  it("never trims a filesystem whose disk passes no discard, whatever the host says", () => {
    const plan = decideZero("vm", [fs("/", false)], "auto", reserve, { discardReachesImages: true });
    expect(plan.steps).toEqual([{ kind: "fill", mount: "/", mib: 850 }]);
  });
});

describe("the fill after a trim the host did not see", () => {
  const answers = {
    fstrim: { exitCode: 0, stdout: "/data: 300 MiB (314572800 bytes) trimmed\n" },
    "dd if=/dev/zero": { exitCode: 0, stdout: "891289600 bytes (891 MB, 850 MiB) copied, 4 s, 220 MB/s\n" },
  };
  const unchanged = () => {
    const allocations = [500 * MiB, 499 * MiB];
    return async () => allocations.shift() ?? 0;
  };

  it("is not run when it could grow the image beyond the hypervisor's room", async () => {
    const plan = decideZero("vm", [fs("/data", true)], "auto", reserve, { roomBytes: 500 * MiB });
    const { transport, ran } = scripted(answers);
    const outcomes = await applyZeroGuest(plan, transport, undefined, unchanged());
    expect(ran.some((c) => c.includes("dd if=/dev/zero"))).toBe(false);
    expect(outcomes).toEqual([
      {
        mount: "/data",
        kind: "trim",
        ok: true,
        bytes: 314572800,
        message:
          "trim freed 300 MiB in the guest but the host's image gave back only 1 MiB (discard does not reach it); a fill of 850 MiB could grow the image by as much, and the hypervisor has room for 500 MiB beside it; not filled",
      },
    ]);
  });

  it("counts the room the planned fills already took", async () => {
    const plan = decideZero("vm", [fs("/", false), fs("/data", true)], "auto", reserve, {
      roomBytes: 1000 * MiB,
    });
    expect(plan.steps.map((s) => s.kind)).toEqual(["fill", "trim"]);
    const { transport, ran } = scripted(answers);
    const outcomes = await applyZeroGuest(plan, transport, undefined, unchanged());
    expect(ran.filter((c) => c.includes("dd if=/dev/zero"))).toHaveLength(1);
    expect(outcomes[1]).toMatchObject({ mount: "/data", kind: "trim" });
    expect(outcomes[1]?.message).toMatch(/; a fill of 850 MiB .* room for 150 MiB beside it; not filled$/);
  });

  it("runs when the room allows it", async () => {
    const plan = decideZero("vm", [fs("/data", true)], "auto", reserve, { roomBytes: 2000 * MiB });
    const { transport, ran } = scripted(answers);
    const [outcome] = await applyZeroGuest(plan, transport, undefined, unchanged());
    expect(ran.filter((c) => c.includes("dd if=/dev/zero"))).toHaveLength(1);
    expect(outcome).toMatchObject({ mount: "/data", kind: "fill", ok: true, bytes: 891289600 });
  });
});

describe("a fill that would give back too little", () => {
  const slack = (allocatedMiB: number) => ({
    allocatedBytes: allocatedMiB * MiB,
    minReclaimableBytes: 64 * MiB,
    minRatio: 0.1,
  });

  it("is not planned once the image holds little beyond the guest's files (a second run after a rewrite)", () => {
    // 100 MiB of files; the rewritten image allocates 140 MiB: at most 40 MiB to gain.
    const plan = decideZero("vm", [fs("/data", false, 900)], "fill", reserve, { slack: slack(140) });
    expect(plan.steps).toEqual([
      {
        kind: "skip",
        mount: "/data",
        reason:
          "the images allocate 140 MiB for 100 MiB of files and 50 MiB the fill reserve keeps free: a fill could give back at most 0 B, below the policy's thresholds",
      },
    ]);
    expect(plan.fillBytes).toBe(0);
    expect(plan.fillNotWorth).toMatch(/at most 0 B/);
  });

  it("does not count what the reserve keeps free, which no fill zeroes (else every run fills and shuts down again)", () => {
    // 100 MiB of files, 300 MiB allocated: 200 MiB of old data, but a 40% reserve keeps 400 MiB
    // of the free space untouched, so a fill cannot reach it.
    const big = { kind: "ratio" as const, ratio: 0.4 };
    expect(
      decideZero("vm", [fs("/data", false, 900)], "fill", big, { slack: slack(300) }).fillNotWorth,
    ).toMatch(/400 MiB the fill reserve keeps free: a fill could give back at most 0 B/);
    expect(
      decideZero("vm", [fs("/data", false, 900)], "fill", reserve, { slack: slack(300) }).fillNotWorth,
    ).toBe(undefined);
  });

  it("is planned while the image holds deleted data worth giving back", () => {
    const plan = decideZero("vm", [fs("/data", false, 900)], "fill", reserve, { slack: slack(700) });
    expect(plan.steps[0]?.kind).toBe("fill");
  });

  it("still lets trims run, which cost nothing when there is nothing to free", () => {
    const plan = decideZero("vm", [fs("/data", true, 900)], "trim", reserve, { slack: slack(140) });
    expect(plan.steps).toEqual([{ kind: "trim", mount: "/data" }]);
  });

  it("is not written by zero: auto after a trim the host did not see, either", async () => {
    const plan = decideZero("vm", [fs("/data", true, 900)], "auto", reserve, { slack: slack(140) });
    const { transport, ran } = scripted({ fstrim: { stdout: "/data: 800 MiB (838860800 bytes) trimmed\n" } });
    const sizes = [500 * MiB, 500 * MiB];
    const outcomes = await applyZeroGuest(plan, transport, undefined, async () => sizes.shift() ?? 0);
    expect(ran.some((line) => line.includes("dd if=/dev/zero"))).toBe(false);
    expect(outcomes[0]?.message).toMatch(/\(discard does not reach it\); the images allocate 140 MiB/);
  });
});

describe("a fill for a guest that keeps running", () => {
  const busy = {
    noRewrite: "its running guest is not shut down for its images (shutdown: never keeps the guest running)",
  };

  it("is not picked by zero: auto: nothing would drop the zeros", () => {
    const plan = decideZero("vm", [fs("/data", false)], "auto", reserve, busy);
    expect(plan.steps).toEqual([
      {
        kind: "skip",
        mount: "/data",
        reason:
          "no fill: its running guest is not shut down for its images (shutdown: never keeps the guest running), and zeros written now would only grow its image until a rewrite",
      },
    ]);
  });

  it("is still written when the policy says zero: fill", () => {
    const plan = decideZero("vm", [fs("/data", false)], "fill", reserve, busy);
    expect(plan.steps[0]?.kind).toBe("fill");
  });
});

describe("a long fill's progress", () => {
  it("is reported from the fill file's size while dd runs, and not after it ended", async () => {
    const plan = decideZero("vm", [fs("/data", false, 900)], "fill", reserve);
    let ddDone = false;
    const sizes = [100 * MiB, 300 * MiB];
    const transport = {
      host: "vm",
      run: async (spec: { argv: readonly string[] }) => {
        const line = spec.argv.join(" ");
        const answer = (stdout: string) => ({
          argv: spec.argv,
          exitCode: 0,
          signal: null,
          stdout,
          stderr: "",
          durationMs: 1,
          timedOut: false,
        });
        if (line.includes("dd if=/dev/zero")) {
          await new Promise((r) => setTimeout(r, 120));
          ddDone = true;
          return answer("891289600 bytes (891 MB, 850 MiB) copied, 4 s, 220 MB/s\n");
        }
        if (spec.argv[0] === "stat") return answer(`${sizes.shift() ?? 300 * MiB}\n`);
        return answer("");
      },
      close: async () => {},
    };
    const seen: [string, number, number, boolean][] = [];
    await applyZeroGuest(plan, transport, undefined, undefined, {
      onFill: (mount, bytes, total) => seen.push([mount, bytes, total, ddDone]),
      everyMs: 40,
    });
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(seen[0]).toEqual(["/data", 100 * MiB, 850 * MiB, false]);
    expect(seen.every(([, , , after]) => !after)).toBe(true);
  });
});
