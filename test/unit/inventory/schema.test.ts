import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { schemaValidator } from "../../../src/config/schema-check.js";
import { checkVar, HONOURED_VARS } from "../../../src/inventory/vars.js";

type SchemaNode = Record<string, unknown>;

/** Every subschema that stands for a value (not the $defs container or a properties map itself). */
function subschemas(node: SchemaNode, path = "#"): [string, SchemaNode][] {
  const found: [string, SchemaNode][] = [[path, node]];
  for (const [key, value] of Object.entries(node)) {
    if (key === "properties" || key === "$defs") {
      for (const [name, child] of Object.entries(value as Record<string, SchemaNode>)) {
        found.push(...subschemas(child, `${path}/${key}/${name}`));
      }
    } else if (key === "additionalProperties" && typeof value === "object") {
      found.push(...subschemas(value as SchemaNode, `${path}/${key}`));
    }
  }
  return found;
}

describe("schemas/inventory.schema.json", () => {
  const schema = JSON.parse(
    readFileSync(new URL("../../../schemas/inventory.schema.json", import.meta.url), "utf8"),
  ) as SchemaNode;

  it("is a draft 2020-12 schema that ajv compiles in strict mode", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(schema.$id).toBe("https://reclaim.dev/schemas/inventory.schema.json");
    expect(() => schemaValidator("inventory")).not.toThrow();
  });

  it("gives editors a title and a description on every definition and property", () => {
    const missing = subschemas(schema)
      .filter(([path]) => !path.endsWith("/additionalProperties"))
      .filter(([, node]) => typeof node.title !== "string" || typeof node.description !== "string")
      .map(([path]) => path);
    expect(missing).toEqual([]);
  });

  it("types every variable reclaim reads, and only those", () => {
    const vars = (schema.$defs as Record<string, SchemaNode>).vars?.properties as SchemaNode;
    expect(Object.keys(vars).sort()).toEqual([...HONOURED_VARS].sort());
  });

  // The INI reader checks with vars.ts what the YAML reader checks with the schema: they must agree.
  const SAMPLES: unknown[] = [
    "",
    "kvm01",
    "127.0.0.2",
    "22",
    "0",
    "022",
    "65535",
    "65536",
    "abc",
    " 22",
    0,
    1,
    22,
    65535,
    65536,
    -1,
    22.5,
    true,
    false,
    "yes",
    "no",
    "Yes",
    "NO",
    "on",
    "Off",
    "oN",
    "true",
    "False",
    "TRUE",
    "y",
    "1",
    "maybe",
    "local",
    "ssh",
    "smart",
    "paramiko",
    "docker",
    "root",
    "admin",
    "kvm01\n",
    "10.0.0.1\u0000$(touch x)",
    "tab\there",
    "\u007f",
    "dísk ü 日本",
    null,
    [],
    {},
  ];
  it.each(HONOURED_VARS)("accepts exactly the values of %s that vars.ts accepts", (name) => {
    const validate = schemaValidator("inventory");
    const disagreements = SAMPLES.filter(
      (value) => validate({ all: { vars: { [name]: value } } }) !== (checkVar(name, value) === undefined),
    );
    expect(disagreements).toEqual([]);
  });
});
