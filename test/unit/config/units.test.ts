import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { Reserve } from "../../../src/config/model.js";
import { compileSchema } from "../../../src/config/schema-check.js";
import {
  formatBytes,
  parseDuration,
  parseRatio,
  parseReserve,
  parseSize,
} from "../../../src/config/units.js";

const schema = JSON.parse(
  readFileSync(new URL("../../../schemas/playbook.schema.json", import.meta.url), "utf8"),
) as { $schema: string; $defs: Record<string, unknown> };

/** Whether the schema's definition `name` accepts `value`, as an editor or the loader would. */
function schemaAccepts(name: string): (value: unknown) => boolean {
  const validate = compileSchema({ $schema: schema.$schema, $defs: schema.$defs, $ref: `#/$defs/${name}` });
  return (value) => validate(value);
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/**
 * Each row: what the user writes, what it parses to (undefined: refused), and whether the schema
 * accepts it. The schema refuses whatever does not parse, except values of the right form that
 * are out of range, which the loader reports instead.
 */
type Row<T> = [
  input: string | number,
  parsed: T | undefined,
  schema: "accepts it" | "refuses it" | "accepts its form (out of range)",
];

const sizes: Row<number>[] = [
  [0, 0, "accepts it"],
  [1024, 1024, "accepts it"],
  ["1024", 1024, "accepts it"],
  ["0B", 0, "accepts it"],
  ["100 b", 100, "accepts it"],
  ["512MiB", 512 * MiB, "accepts it"],
  ["1GiB", GiB, "accepts it"],
  ["1.5G", 1.5 * GiB, "accepts it"],
  ["1.5 GiB", 1.5 * GiB, "accepts it"],
  ["10 MB", 10 * MiB, "accepts it"],
  ["1k", 1024, "accepts it"],
  ["1kb", 1024, "accepts it"],
  ["1KIB", 1024, "accepts it"],
  ["2T", 2 * 2 ** 40, "accepts it"],
  ["1.3K", 1331, "accepts it"],
  ["9007199254740991", Number.MAX_SAFE_INTEGER, "accepts it"],
  ["9007199254740992", undefined, "accepts its form (out of range)"],
  ["8388608T", undefined, "accepts its form (out of range)"],
  [2 ** 53, undefined, "refuses it"],
  [-1, undefined, "refuses it"],
  [1.5, undefined, "refuses it"],
  [Number.NaN, undefined, "refuses it"],
  [Number.POSITIVE_INFINITY, undefined, "refuses it"],
  ["-1G", undefined, "refuses it"],
  ["1.5", undefined, "refuses it"],
  ["1.5B", undefined, "refuses it"],
  ["1Ki", undefined, "refuses it"],
  ["1P", undefined, "refuses it"],
  ["1  G", undefined, "refuses it"],
  [" 1G", undefined, "refuses it"],
  ["1G ", undefined, "refuses it"],
  [".5G", undefined, "refuses it"],
  ["lots", undefined, "refuses it"],
  ["", undefined, "refuses it"],
];

const ratios: Row<number>[] = [
  [0, 0, "accepts it"],
  [0.1, 0.1, "accepts it"],
  [1, 1, "accepts it"],
  ["10%", 0.1, "accepts it"],
  ["12.5%", 0.125, "accepts it"],
  ["100%", 1, "accepts it"],
  ["0%", 0, "accepts it"],
  ["0.1", 0.1, "accepts it"],
  ["150%", undefined, "accepts its form (out of range)"],
  ["2", undefined, "accepts its form (out of range)"],
  [2, undefined, "refuses it"],
  [-0.1, undefined, "refuses it"],
  ["-5%", undefined, "refuses it"],
  ["10 %", undefined, "refuses it"],
  [".5", undefined, "refuses it"],
  ["%", undefined, "refuses it"],
  ["ten", undefined, "refuses it"],
];

const durations: Row<number>[] = [
  [300, 300_000, "accepts it"],
  [0.5, 500, "accepts it"],
  ["300", 300_000, "accepts it"],
  ["0", 0, "accepts it"],
  ["500ms", 500, "accepts it"],
  ["90s", 90_000, "accepts it"],
  ["5m", 300_000, "accepts it"],
  ["1h", 3_600_000, "accepts it"],
  ["1m30s", 90_000, "accepts it"],
  ["1.5h", 5_400_000, "accepts it"],
  ["1h2m3s4ms", 3_723_004, "accepts it"],
  ["9999999999999h", undefined, "accepts its form (out of range)"],
  [-1, undefined, "refuses it"],
  ["-5s", undefined, "refuses it"],
  ["30s1m", undefined, "refuses it"],
  ["1m1m", undefined, "refuses it"],
  ["5 m", undefined, "refuses it"],
  ["5M", undefined, "refuses it"],
  ["1d", undefined, "refuses it"],
  ["m", undefined, "refuses it"],
  ["", undefined, "refuses it"],
];

const reserves: Row<Reserve>[] = [
  [0.05, { kind: "ratio", ratio: 0.05 }, "accepts it"],
  ["5%", { kind: "ratio", ratio: 0.05 }, "accepts it"],
  ["0.05", { kind: "ratio", ratio: 0.05 }, "accepts it"],
  ["2GiB", { kind: "bytes", bytes: 2 * GiB }, "accepts it"],
  ["512 M", { kind: "bytes", bytes: 512 * MiB }, "accepts it"],
  ["0B", { kind: "bytes", bytes: 0 }, "accepts it"],
  ["1024", undefined, "accepts its form (out of range)"],
  ["150%", undefined, "accepts its form (out of range)"],
  ["8388608T", undefined, "accepts its form (out of range)"],
  [2, undefined, "refuses it"],
  [-0.05, undefined, "refuses it"],
  ["lots", undefined, "refuses it"],
  ["1.5B", undefined, "refuses it"],
];

describe.each([
  ["size", parseSize, sizes],
  ["ratio", parseRatio, ratios],
  ["duration", parseDuration, durations],
  ["reserve", parseReserve, reserves],
] as const)("a %s", (name, parse, rows) => {
  const accepts = schemaAccepts(name);

  it.each(rows as Row<unknown>[])("%j parses to %j; the schema %s", (input, parsed, verdict) => {
    expect((parse as (v: string | number) => unknown)(input)).toEqual(parsed);
    expect(accepts(input)).toBe(verdict !== "refuses it");
  });
});

describe("formatBytes", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1 KiB"],
    [1536, "1.5 KiB"],
    [512 * MiB, "512 MiB"],
    [1.5 * GiB, "1.5 GiB"],
    [1.25 * GiB, "1.3 GiB"],
    [GiB - 1, "1 GiB"],
    [Number.MAX_SAFE_INTEGER, "8 PiB"],
    [-1536, "-1.5 KiB"],
  ])("prints %d bytes as %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it.each([0, 1, 1023, 1536, 5 * MiB + 12345, 1.5 * GiB, 3 * 2 ** 40 + 7])(
    "prints %d as a size that reads back within 5%%",
    (bytes) => {
      const back = parseSize(formatBytes(bytes));
      expect(back).toBeDefined();
      expect(Math.abs((back ?? 0) - bytes)).toBeLessThanOrEqual(bytes * 0.05);
    },
  );
});
