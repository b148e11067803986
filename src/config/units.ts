/**
 * Sizes, shares and durations as a user writes them in a playbook, and sizes as reclaim prints
 * them. The grammar here and the patterns in schemas/playbook.schema.json accept the same strings
 * (test/unit/config/units.test.ts holds both to one table); the schema cannot check ranges, so a
 * value can match its pattern and still be refused here (`150%`, `99999999T`).
 */
import type { Reserve } from "./model.js";

/**
 * Every unit is a power of 1024, whether written K, KB or KiB, as qemu-img reads them: a disk
 * image's sizes are binary, and a "GB" that meant 10^9 here would silently disagree with
 * `qemu-img info`.
 */
const SIZE_MULTIPLIERS: Readonly<Record<string, number>> = {
  "": 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

/** Digits with a unit may have a fraction (1.5G); bytes may not. */
const SIZE_SYNTAX =
  /^(?:(?<bytes>[0-9]+)(?: ?[bB])?|(?<amount>[0-9]+(?:\.[0-9]+)?) ?(?<unit>[kKmMgGtT])(?:[iI]?[bB])?)$/;
const RATIO_SYNTAX = /^(?<amount>[0-9]+(?:\.[0-9]+)?)(?<percent>%?)$/;
/** Hours, minutes, seconds, milliseconds, each at most once and in that order. */
const DURATION_SYNTAX =
  /^(?=[0-9])(?:(?<h>[0-9]+(?:\.[0-9]+)?)h)?(?:(?<m>[0-9]+(?:\.[0-9]+)?)m)?(?:(?<s>[0-9]+(?:\.[0-9]+)?)s)?(?:(?<ms>[0-9]+(?:\.[0-9]+)?)ms)?$/;
const SECONDS_SYNTAX = /^[0-9]+(?:\.[0-9]+)?$/;

/**
 * Bytes in `v`: a whole number of bytes, or digits (a fraction allowed) with a unit B, K, KB, KiB,
 * M, MB, MiB, G, GB, GiB, T, TB or TiB, in any case, with at most one space before the unit. All
 * units are powers of 1024. A fractional result is rounded to the nearest byte. Undefined for
 * anything else, for negatives and for more than 2^53 - 1 bytes.
 */
export function parseSize(v: string | number): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  const groups = SIZE_SYNTAX.exec(v)?.groups;
  if (!groups) return undefined;
  const bytes =
    groups.bytes !== undefined
      ? Number(groups.bytes)
      : Math.round(
          Number(groups.amount) * (SIZE_MULTIPLIERS[groups.unit?.toLowerCase() ?? ""] ?? Number.NaN),
        );
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * A share between 0 and 1 inclusive: a number (0.1), or a string with a percentage (`10%`) or
 * without one (`0.1`). Undefined for anything else or out of range.
 */
export function parseRatio(v: string | number): number | undefined {
  let ratio: number;
  if (typeof v === "number") {
    ratio = v;
  } else {
    const groups = RATIO_SYNTAX.exec(v)?.groups;
    if (!groups) return undefined;
    ratio = groups.percent ? Number(groups.amount) / 100 : Number(groups.amount);
  }
  return Number.isFinite(ratio) && ratio >= 0 && ratio <= 1 ? ratio : undefined;
}

/**
 * Milliseconds in `v`: a number of seconds (number or digits), or components `h`, `m`, `s`, `ms`
 * in that order, each with an optional fraction (`1m30s`, `1.5h`, `500ms`). Rounded to the nearest
 * millisecond. Undefined for anything else, negatives, and more than 2^53 - 1 ms.
 */
export function parseDuration(v: string | number): number | undefined {
  let ms: number;
  if (typeof v === "number") {
    ms = v * 1000;
  } else if (SECONDS_SYNTAX.test(v)) {
    ms = Number(v) * 1000;
  } else {
    const groups = DURATION_SYNTAX.exec(v)?.groups;
    if (!groups) return undefined;
    const part = (digits: string | undefined, unitMs: number) =>
      digits === undefined ? 0 : Number(digits) * unitMs;
    ms = part(groups.h, 3_600_000) + part(groups.m, 60_000) + part(groups.s, 1000) + part(groups.ms, 1);
  }
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  const rounded = Math.round(ms);
  return Number.isSafeInteger(rounded) ? rounded : undefined;
}

/**
 * `fill_reserve`: a share (a number, `5%`, `0.05`) or a size with a unit (`2GiB`, `512M`, `0B`).
 * Digits without a unit are a share, so `"1024"` is refused as more than 100%, not read as bytes.
 */
export function parseReserve(v: string | number): Reserve | undefined {
  if (typeof v === "number" || RATIO_SYNTAX.test(v)) {
    const ratio = parseRatio(v);
    return ratio === undefined ? undefined : { kind: "ratio", ratio };
  }
  const bytes = parseSize(v);
  return bytes === undefined ? undefined : { kind: "bytes", bytes };
}

const DISPLAY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] as const;

/**
 * A byte count for people: the largest binary unit that keeps the number at 1 or more, one decimal
 * dropped when it is 0 (`0 B`, `1023 B`, `512 MiB`, `1.5 GiB`). The output is itself a valid size.
 */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return `${n} B`;
  const sign = n < 0 ? "-" : "";
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < DISPLAY_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  let rounded = unit === 0 ? Math.round(value) : Math.round(value * 10) / 10;
  // 1023.96 KiB rounds to 1024.0 KiB: say 1 MiB instead.
  if (rounded >= 1024 && unit < DISPLAY_UNITS.length - 1) {
    rounded = 1;
    unit += 1;
  }
  const text = Number.isInteger(rounded) ? String(rounded) : rounded.toFixed(1);
  return `${sign}${text} ${DISPLAY_UNITS[unit]}`;
}

/** A share for people, rounded: one decimal below 10 % (`0.8%`), whole percents above (`61%`). */
export function formatRatio(ratio: number): string {
  return `${(ratio * 100).toFixed(ratio < 0.1 ? 1 : 0)}%`;
}
