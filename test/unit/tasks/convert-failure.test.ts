import { describe, expect, it } from "vitest";
import { convertFailureMessage } from "../../../src/tasks/convert-failure.js";

const MiB = 1024 * 1024;
/** Recorded from qemu-img 7.2 on a tmpfs filled by another writer during the conversion. */
const WRITE_ENOSPC = "qemu-img: error while writing at byte 102760448: No space left on device\n";
/** Recorded: the filesystem was already full when qemu-img created its target. */
const CREATE_ENOSPC =
  "qemu-img: /images/.vm.qcow2.reclaim-tmp: error while converting qcow2: Could not write qcow2 header: No space left on device\n";

describe("convertFailureMessage", () => {
  it("says the host filesystem filled up, with its free and total bytes and what the new image needed", () => {
    expect(
      convertFailureMessage({
        stderr: WRITE_ENOSPC,
        space: { availableBytes: 3.1 * MiB, sizeBytes: 96 * MiB },
        estimatedBytes: 40 * MiB,
      }),
    ).toBe(
      "the host filesystem filled up during the conversion: 3.1 MiB free of 96 MiB, " +
        "the new image needed about 40 MiB " +
        "(qemu-img: error while writing at byte 102760448: No space left on device)",
    );
  });

  it.each([
    [
      "no total size",
      { availableBytes: 0 },
      40 * MiB,
      "the host filesystem filled up during the conversion: 0 B free, the new image needed about 40 MiB",
    ],
    [
      "no free space read",
      undefined,
      40 * MiB,
      "the host filesystem filled up during the conversion: its free space could not be read, the new image needed about 40 MiB",
    ],
    [
      "no estimate",
      { availableBytes: 512, sizeBytes: 2 * 1024 * MiB },
      undefined,
      "the host filesystem filled up during the conversion: 512 B free of 2 GiB",
    ],
  ] as const)("with %s, says what it knows", (_, space, estimatedBytes, start) => {
    const message = convertFailureMessage({
      stderr: WRITE_ENOSPC,
      ...(space ? { space } : {}),
      ...(estimatedBytes === undefined ? {} : { estimatedBytes }),
    });
    expect(message).toBe(
      `${start} (qemu-img: error while writing at byte 102760448: No space left on device)`,
    );
  });

  it("recognises a full filesystem when qemu-img was creating its target, among other lines", () => {
    const message = convertFailureMessage({
      stderr: `    (0.00/100%)\r\n${CREATE_ENOSPC}`,
      space: { availableBytes: 0, sizeBytes: 384 * MiB },
      estimatedBytes: 120 * MiB,
    });
    expect(message).toMatch(/^the host filesystem filled up during the conversion: 0 B free of 384 MiB, /);
    expect(message).toContain(`(${CREATE_ENOSPC.trim()})`);
  });

  it("names a quota that ran out, and qemu-img's words even when a transport stripped its name", () => {
    expect(
      convertFailureMessage({
        stderr: "error while writing at byte 4096: Disk quota exceeded",
        space: { availableBytes: 10 * 1024 * MiB, sizeBytes: 100 * 1024 * MiB },
        estimatedBytes: 3 * 1024 * MiB,
      }),
    ).toBe(
      "the disk quota ran out during the conversion: 10 GiB free of 100 GiB, the new image needed about 3 GiB " +
        "(qemu-img: error while writing at byte 4096: Disk quota exceeded)",
    );
  });

  it.each([
    ["another error", "qemu-img: Could not open '/images/vm.qcow2': Permission denied\n"],
    ["a lock", 'qemu-img: Failed to get shared "write" lock\nIs another process using the image?\n'],
    ["nothing on stderr", ""],
  ])("leaves %s to the caller (undefined)", (_, stderr) => {
    expect(
      convertFailureMessage({ stderr, space: { availableBytes: 0, sizeBytes: MiB }, estimatedBytes: MiB }),
    ).toBeUndefined();
  });

  it("never prints a negative free space", () => {
    expect(convertFailureMessage({ stderr: WRITE_ENOSPC, space: { availableBytes: -4096 } })).toMatch(
      /: 0 B free \(/,
    );
  });
});
