import { describe, expect, it } from "vitest";
import { acquireDiskLock } from "../../../src/tasks/disk-lock.js";
import { createLocalTransport } from "../../../src/transport/local.js";

const transport = createLocalTransport();
/** A path no other test uses: the lock is machine-wide, named after it. */
const image = `/images/disk-lock-test-${process.pid}-${Date.now()}.qcow2`;

describe("one runner per disk", () => {
  it("makes a second runner wait, then leave the disk, naming who holds it", async () => {
    const first = await acquireDiskLock(transport, image, { waitMs: 1000, owner: "runner A since 10:00" });
    expect(first.held).toBe(true);
    try {
      const second = await acquireDiskLock(transport, image, { waitMs: 1000, owner: "runner B" });
      expect(second).toEqual({
        held: false,
        reason: expect.stringMatching(
          /another runner is working on this disk \(lock reclaim-[0-9a-f]{16}\.lock, held by runner A since 10:00\); waited 1 s/,
        ),
      });
    } finally {
      if (first.held) await first.release();
    }
  });

  it("is released when its holder falls silent (a link that died without a word), not before", async () => {
    const silent = await acquireDiskLock(transport, image, {
      waitMs: 1000,
      owner: "A",
      keepaliveMs: 60_000,
      silenceLimitSeconds: 2,
    });
    const talking = `${image}.talking`;
    const kept = await acquireDiskLock(transport, talking, {
      waitMs: 1000,
      owner: "C",
      keepaliveMs: 500,
      silenceLimitSeconds: 2,
    });
    try {
      const next = await acquireDiskLock(transport, image, { waitMs: 10_000, owner: "B" });
      expect(next.held).toBe(true);
      if (next.held) await next.release();
      // Meanwhile the holder that kept speaking kept its lock.
      const blocked = await acquireDiskLock(transport, talking, { waitMs: 1000, owner: "D" });
      expect(blocked.held).toBe(false);
    } finally {
      if (silent.held) await silent.release();
      if (kept.held) await kept.release();
    }
  });

  it("lets the next runner in once the lock is released", async () => {
    const first = await acquireDiskLock(transport, image, { waitMs: 1000, owner: "A" });
    if (!first.held) throw new Error("first lock not held");
    const waiting = acquireDiskLock(transport, image, { waitMs: 10_000, owner: "B" });
    await new Promise((r) => setTimeout(r, 300));
    await first.release();
    const second = await waiting;
    expect(second.held).toBe(true);
    if (second.held) await second.release();
  });

  it("is released when its holder is interrupted", async () => {
    const controller = new AbortController();
    const first = await acquireDiskLock(transport, image, {
      waitMs: 1000,
      owner: "A",
      signal: controller.signal,
    });
    expect(first.held).toBe(true);
    controller.abort();
    const second = await acquireDiskLock(transport, image, { waitMs: 5000, owner: "B" });
    expect(second.held).toBe(true);
    if (second.held) await second.release();
    if (first.held) await first.release();
  });
});
