import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { GuestFilesystem } from "../../../src/guest/filesystems.js";
import {
  FILL_BUSY_EXIT,
  FILL_FILE,
  fillArgv,
  fillSize,
  parseFilled,
  parseStoppedAtReserve,
  parseTrimmed,
  removeFillLeftoversArgv,
  trimArgv,
} from "../../../src/guest/zero-commands.js";
import { createLocalTransport } from "../../../src/transport/local.js";
import { fixture } from "../../helpers/results.js";

const MiB = 1024 * 1024;
const fs = (availMiB: number, sizeMiB = 1000): GuestFilesystem => ({
  mount: "/data",
  device: "/dev/vdb",
  type: "ext4",
  sizeBytes: sizeMiB * MiB,
  usedBytes: (sizeMiB - availMiB) * MiB,
  availableBytes: availMiB * MiB,
  discard: false,
});

describe("zeroing commands", () => {
  it("reads the bytes fstrim trimmed, from util-linux and from older formats", () => {
    expect(parseTrimmed(fixture("guest/fstrim-util-linux.txt"))).toBe(1288490188);
    expect(parseTrimmed(fixture("guest/fstrim-old.txt"))).toBe(1288490188);
    expect(parseTrimmed("fstrim: /data: the discard operation is not supported")).toBeUndefined();
  });

  it("reads what dd wrote, even when the filesystem filled up under it", () => {
    expect(parseFilled(fixture("guest/dd-enospc.txt"))).toBe(104857600);
  });

  it("reads busybox dd, which only counts records of the fill's 1 MiB blocks", () => {
    expect(parseFilled("360+0 records in\n360+0 records out\n")).toBe(360 * MiB);
    expect(
      parseFilled(
        "dd: error writing '/data/.reclaim-zero-fill': No space left on device\n12+0 records in\n11+1 records out\n",
      ),
    ).toBe(11 * MiB);
  });

  it("fills all but the reserve, as a share or a size, and nothing when the reserve covers it", () => {
    expect(fillSize(fs(500), { kind: "ratio", ratio: 0.05 })).toEqual({ mib: 450 });
    expect(fillSize(fs(500), { kind: "bytes", bytes: 100 * MiB })).toEqual({ mib: 400 });
    expect(fillSize(fs(40), { kind: "ratio", ratio: 0.05 })).toEqual({
      skip: "/data: free space is within the reserve, nothing to fill",
    });
  });

  it("syncs before trimming and passes the mount point as data", () => {
    const argv = trimArgv("/srv/my data");
    expect(argv.at(-1)).toBe("/srv/my data");
    expect(argv[2]).toMatch(/^sync && exec fstrim -v -- "\$1"$/);
  });

  it("writes the zeros, then leaves no fill file behind, on success and on failure", () => {
    const dir = mkdtempSync(join(tmpdir(), "reclaim-fill-test-"));
    try {
      const out = execFileSync(fillArgv(dir, 3)[0] as string, fillArgv(dir, 3).slice(1), {
        encoding: "utf8",
      });
      expect(parseFilled(out)).toBe(3 * MiB);
      expect(readdirSync(dir)).toEqual([]);
      // A directory where the file should be: dd fails; still nothing left, and the failure shows.
      execFileSync("mkdir", [join(dir, FILL_FILE)]);
      expect(() => execFileSync("sh", fillArgv(dir, 1).slice(1), { stdio: "ignore" })).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(existsSync(dir)).toBe(false);
  });

  it.runIf(process.getuid?.() === 0)(
    "stops at the reserve when another writer used the space up since the plan, and leaves nothing behind",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "reclaim-fill-reserve-"));
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=200m", "tmpfs", dir]);
      try {
        // Planned with 180 MiB free and a 40 MiB reserve: 140 MiB. Then the guest's own program
        // wrote 100 MiB.
        execFileSync("dd", ["if=/dev/zero", `of=${join(dir, "app.log")}`, "bs=1M", "count=100"], {
          stdio: "ignore",
        });
        const argv = fillArgv(dir, 140, 40 * MiB);
        const out = execFileSync(argv[0] as string, argv.slice(1), { encoding: "utf8" });
        expect(parseStoppedAtReserve(out)).toBeGreaterThanOrEqual(40);
        const written = parseFilled(out) ?? -1;
        expect(written).toBeGreaterThan(0);
        expect(written).toBeLessThanOrEqual(60 * MiB);
        expect(readdirSync(dir)).toEqual(["app.log"]);
      } finally {
        execFileSync("umount", [dir]);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it("stops by itself and removes its file when its caller's input ends (the caller went away)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "reclaim-fill-orphan-"));
    try {
      const gone = new AbortController();
      const running = createLocalTransport().run({
        argv: fillArgv(dir, 4096, 0, true),
        holdStdinUntil: gone.signal,
        timeoutMs: 120_000,
      });
      await waitUntil(() => existsSync(join(dir, FILL_FILE)));
      gone.abort();
      const r = await running;
      expect(r.exitCode).toBe(143);
      expect(parseFilled(r.stdout) ?? 0).toBeLessThan(4096 * MiB);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("runs one fill per filesystem: a second one leaves the first and its file alone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "reclaim-fill-one-"));
    try {
      const local = createLocalTransport();
      const stop = new AbortController();
      const first = local.run({
        argv: fillArgv(dir, 4096, 0, true),
        holdStdinUntil: stop.signal,
        timeoutMs: 120_000,
      });
      await waitUntil(() => existsSync(join(dir, FILL_FILE)));
      const second = await local.run({ argv: fillArgv(dir, 1, 0), timeoutMs: 10_000 });
      expect(second.exitCode).toBe(FILL_BUSY_EXIT);
      const tidy = await local.run({ argv: removeFillLeftoversArgv([dir]), timeoutMs: 10_000 });
      expect(tidy.stdout).toBe(`busy ${dir}\n`);
      expect(existsSync(join(dir, FILL_FILE))).toBe(true);
      stop.abort();
      await first;
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("refuses a fill size that is not a positive whole number", () => {
    expect(() => fillArgv("/data", 0)).toThrow(RangeError);
    expect(() => fillArgv("/data", 1.5)).toThrow(RangeError);
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
    await new Promise((r) => setTimeout(r, 20));
  }
}
