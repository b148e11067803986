import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { ReclaimPolicy } from "../../../src/config/model.js";
import { DEFAULT_POLICY, resolvePolicy } from "../../../src/config/playbook.js";
import type * as Raw from "../../../src/config/playbook.types.js";
import { compileSchema } from "../../../src/config/schema-check.js";

interface SchemaNode {
  [keyword: string]: unknown;
  properties?: Record<string, SchemaNode>;
}

const schema = JSON.parse(
  readFileSync(new URL("../../../schemas/playbook.schema.json", import.meta.url), "utf8"),
) as SchemaNode & { $defs: Record<string, SchemaNode> };
const defs = schema.$defs;
const policyKeys = Object.keys(defs.policy?.properties ?? {});

/** Every subschema with the path that leads to it. */
function* subschemas(node: SchemaNode, path: string): Generator<[string, SchemaNode]> {
  yield [path, node];
  for (const [key, child] of Object.entries(node.properties ?? {}))
    yield* subschemas(child, `${path}.${key}`);
  if (typeof node.items === "object") yield* subschemas(node.items as SchemaNode, `${path}[]`);
}
const all = [
  ...subschemas(schema, "(root)"),
  ...Object.entries(defs).flatMap(([k, d]) => [...subschemas(d, k)]),
];

describe("the playbook schema", () => {
  it("compiles under ajv's strict mode", () => {
    expect(() => compileSchema(schema)).not.toThrow();
  });

  it("refuses unknown keys in every mapping", () => {
    const objects = all.filter(
      ([, node]) => node.type === "object" || (Array.isArray(node.type) && node.type.includes("object")),
    );
    expect(objects.length).toBeGreaterThan(5);
    for (const [path, node] of objects) expect(node.additionalProperties, path).toBe(false);
  });

  it("describes every key and definition for editors", () => {
    for (const [path, node] of all) {
      // A bare $ref shows the description of what it points at.
      if (Object.keys(node).length === 1 && node.$ref) continue;
      expect(node.title, path).toEqual(expect.any(String));
      expect(node.description, path).toEqual(expect.any(String));
    }
  });

  it("explains every pattern in words", () => {
    for (const [path, node] of all) {
      if (node.pattern !== undefined) expect(node.patternErrorMessage, path).toMatch(/^expected /);
    }
  });

  it("lets a guest override every policy key with the same kind of value", () => {
    const guest = defs.guest?.properties ?? {};
    for (const key of policyKeys) expect(guest[key]?.$ref, key).toBe(defs.policy?.properties?.[key]?.$ref);
  });

  it("documents the same defaults the loader applies", () => {
    const documented = Object.fromEntries(
      policyKeys.map((key) => {
        const property = defs.policy?.properties?.[key] ?? {};
        return [key, key === "convert" ? defs.convert?.default : property.default];
      }),
    ) as Raw.Policy;
    expect(policyKeys.every((key) => (documented as Record<string, unknown>)[key] !== undefined)).toBe(true);
    const elsewhere: ReclaimPolicy = {
      minReclaimableBytes: 1,
      minRatio: 1,
      zero: "none",
      fillReserve: { kind: "bytes", bytes: 1 },
      shutdown: "graceful",
      shutdownTimeoutMs: 1,
      convert: { format: "qcow2", compress: true, keepBackup: true },
      maxParallelPerHost: 1,
    };
    expect(resolvePolicy(elsewhere, documented)).toEqual({ policy: DEFAULT_POLICY, problems: [] });
    const convertDefault = (defs.convert?.default ?? {}) as Record<string, unknown>;
    for (const [key, property] of Object.entries(defs.convert?.properties ?? {})) {
      expect(property.default, key).toEqual(convertDefault[key]);
    }
  });

  const examples = readdirSync(new URL("../../../playbooks/", import.meta.url))
    .filter((name) => name.endsWith(".yml"))
    .map((name) => `playbooks/${name}`);

  it("has every example playbook name it", () => {
    expect(examples).toEqual(
      expect.arrayContaining([
        "playbooks/example.yml",
        "playbooks/nightly.yml",
        "playbooks/ci-nightly.yml",
        "playbooks/one-off-reclaim.yml",
        "playbooks/fleet-discovery.yml",
      ]),
    );
  });

  it.each(examples)("is the one %s asks editors to use", (file) => {
    const text = readFileSync(new URL(`../../../${file}`, import.meta.url), "utf8");
    expect(text.split("\n")[0]).toBe("# yaml-language-server: $schema=../schemas/playbook.schema.json");
  });
});
