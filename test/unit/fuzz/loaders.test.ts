/**
 * Hostile and broken input, generated: the playbook and inventory loaders and the unit parsers are
 * fed thousands of random and mutated documents. Whatever comes in, a loader either returns a
 * result or throws a ConfigError whose every diagnostic has a file, a line and a column — never
 * another exception. The seed is fixed so a failure reproduces; FUZZ_RUNS raises the count.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadPlaybook } from "../../../src/config/playbook.js";
import { parseDuration, parseRatio, parseReserve, parseSize } from "../../../src/config/units.js";
import { ConfigError } from "../../../src/errors.js";
import { loadInventory } from "../../../src/inventory/load.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 2500);
const SEED = 20261125;

/** Accepts a load that worked, or a ConfigError with positions; anything else fails the property. */
function wellBehaved(load: () => unknown): boolean {
  try {
    load();
    return true;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const d of error.diagnostics) {
      expect(d.file).toEqual(expect.any(String));
      expect(Number.isInteger(d.line) && d.line >= 1).toBe(true);
      expect(Number.isInteger(d.column) && d.column >= 1).toBe(true);
      expect(d.message.length).toBeGreaterThan(0);
    }
    return error.diagnostics.length > 0;
  }
}

/** Pieces real playbooks and inventories are made of, so mutations land near valid documents. */
const TOKENS = [
  "- name: p\n",
  "  hosts: all\n",
  "  guests:\n",
  "    - name: web01\n",
  "      disks: [/images/a.qcow2]\n",
  "  policy: { min_reclaimable: 1GiB, zero: auto }\n",
  "    discover: libvirt\n",
  "  vm: { manager: guest, start_command: [a, '{guest}'] }\n",
  "all:\n  hosts:\n    kvm01:\n      ansible_host: 127.0.0.1\n",
  "[group]\nkvm[01:03]\n",
  "&a [*a, *a]\n",
  "!!binary aGk=\n",
  "? [a]\n: b\n",
  "'unterminated\n",
  "\t- tab\n",
  "key: value\nkey: again\n",
  "\u0000\uFEFF\uFFFF",
  "%YAML 1.2\n---\n",
  "{",
  "]",
  ":",
  "- ",
  "  ",
  "\n",
];

const mutated = fc
  .array(
    fc.oneof(
      fc.constantFrom(...TOKENS),
      fc.string({ maxLength: 12 }),
      fc.string({ unit: "grapheme", maxLength: 6 }),
    ),
    {
      maxLength: 24,
    },
  )
  .map((parts) => parts.join(""));

const examples = ["playbooks/example.yml", "playbooks/nightly.yml", "playbooks/one-off-reclaim.yml"].map(
  (f) => readFileSync(f, "utf8"),
);

/** A real example with a few bytes changed, deleted or inserted. */
const corrupted = fc
  .tuple(
    fc.constantFrom(...examples),
    fc.array(fc.tuple(fc.nat(), fc.nat({ max: 4 }), fc.string({ maxLength: 4 })), {
      minLength: 1,
      maxLength: 6,
    }),
  )
  .map(([text, edits]) =>
    edits.reduce((t, [at, drop, insert]) => {
      const i = at % (t.length + 1);
      return t.slice(0, i) + insert + t.slice(i + drop);
    }, text),
  );

describe("generated hostile input", { timeout: 300_000 }, () => {
  it(`never crashes the playbook loader, and every error has a position (${RUNS * 2} documents)`, () => {
    fc.assert(
      fc.property(fc.oneof(mutated, corrupted), (text) => wellBehaved(() => loadPlaybook("fuzz.yml", text))),
      { numRuns: RUNS * 2, seed: SEED },
    );
  });

  it(`never crashes the inventory loader, YAML or INI (${RUNS * 2} documents)`, () => {
    fc.assert(
      fc.property(mutated, fc.constantFrom("hosts.yml", "hosts.ini", "hosts"), (text, file) =>
        wellBehaved(() => loadInventory(file, text)),
      ),
      { numRuns: RUNS * 2, seed: SEED },
    );
  });

  it(`reads sizes, ratios, durations and reserves to a number or nothing, never a throw (${RUNS} each)`, () => {
    const value = fc.oneof(fc.string({ maxLength: 16 }), fc.double(), fc.integer());
    fc.assert(
      fc.property(value, (v) => {
        for (const parse of [parseSize, parseRatio, parseDuration]) {
          const out = parse(v);
          if (out !== undefined && (!Number.isFinite(out) || out < 0)) return false;
        }
        const reserve = parseReserve(v);
        return reserve === undefined || reserve.kind === "ratio" || Number.isFinite(reserve.bytes);
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });
});
