import { describe, expect, it } from "vitest";
import { inShard, parseShard } from "../../../src/run/shard.js";

describe("sharding guests across CI jobs", () => {
  it("reads K/N with 1 ≤ K ≤ N, and nothing else", () => {
    expect(parseShard("2/5")).toEqual({ index: 2, count: 5 });
    expect(parseShard(" 1 / 1 ")).toEqual({ index: 1, count: 1 });
    for (const bad of ["0/3", "4/3", "1/0", "1", "a/b", "-1/3", "1/3/4", ""])
      expect(parseShard(bad)).toBeUndefined();
  });

  it("puts every guest in exactly one shard", () => {
    const guests = Array.from({ length: 500 }, (_, i) => ({ host: `kvm${i % 7}`, guest: `vm${i}` }));
    for (const count of [1, 2, 3, 8]) {
      for (const g of guests) {
        const shards = Array.from({ length: count }, (_, k) =>
          inShard({ index: k + 1, count }, g.host, g.guest),
        );
        expect(shards.filter(Boolean)).toHaveLength(1);
      }
    }
  });

  it("spreads guests roughly evenly", () => {
    const sizes = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) {
      const k = [1, 2, 3, 4].find((index) => inShard({ index, count: 4 }, "kvm01", `vm${i}`)) as number;
      sizes[k - 1] = (sizes[k - 1] ?? 0) + 1;
    }
    for (const size of sizes) expect(size).toBeGreaterThan(850);
  });

  it("gives the same answer on every run and machine: it depends only on host and name", () => {
    // Pinned: a change of the hashing would move guests between CI jobs.
    expect([1, 2, 3].filter((index) => inShard({ index, count: 3 }, "kvm01", "web01"))).toEqual([2]);
    expect(inShard(undefined, "kvm01", "web01")).toBe(true);
  });
});
