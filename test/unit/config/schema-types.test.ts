/**
 * src/config/playbook.types.ts is generated from schemas/playbook.schema.json: this test generates
 * it again and fails when the committed file differs. `npm run schema:types` (vitest --update)
 * rewrites the file from the same code, so there is one set of generator options.
 */
import { readFileSync } from "node:fs";
import { compile, type JSONSchema } from "json-schema-to-typescript";
import { describe, expect, it } from "vitest";

const SCHEMA_FILE = new URL("../../../schemas/playbook.schema.json", import.meta.url);
const TYPES_FILE = "../../../src/config/playbook.types.ts";

const BANNER = `/**
 * The playbook as the user writes it, generated from schemas/playbook.schema.json by
 * \`npm run schema:types\`: do not edit. test/unit/config/schema-types.test.ts fails when the two
 * disagree. The resolved model (units parsed, policies merged) is in model.ts.
 */`;

/**
 * What json-schema-to-typescript reads well: titles are for editors and would each become a type
 * name, so types are named after their $defs key; a value that may be a string or a mapping is
 * split into the two alternatives the single schema stands for.
 */
function forTypes(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(forTypes);
  if (typeof node !== "object" || node === null) return node;
  const entries = Object.entries(node).filter(([key]) => key !== "title");
  const out: Record<string, unknown> = {};
  for (const [key, value] of entries) {
    const isMapOfSchemas = key === "$defs" || key === "properties";
    out[key] = isMapOfSchemas
      ? Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, forTypes(v)]))
      : forTypes(value);
  }
  const types = out.type;
  if (Array.isArray(types) && types.includes("object") && types.length > 1) {
    const { type: _type, properties, required, additionalProperties, description, ...scalar } = out;
    return {
      description,
      anyOf: [
        ...types.filter((t) => t !== "object").map((t) => ({ ...scalar, type: t })),
        { type: "object", properties, required, additionalProperties },
      ],
    };
  }
  return out;
}

const pascal = (key: string) => key.replace(/(?:^|_)(.)/g, (_, c: string) => c.toUpperCase());

async function generatePlaybookTypes(): Promise<string> {
  const schema = JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as JSONSchema & { $id: string };
  return compile(forTypes(schema) as JSONSchema, "PlaybookFile", {
    bannerComment: BANNER,
    additionalProperties: false,
    unknownAny: true,
    customName: (node, key) => (node.$id === schema.$id ? "PlaybookFile" : key && pascal(key)),
    // Biome's formatting, so `biome check` leaves the generated file alone.
    style: { printWidth: 110, bracketSpacing: true, trailingComma: "all", singleQuote: false, semi: true },
  });
}

describe("src/config/playbook.types.ts", () => {
  it("is what json-schema-to-typescript generates from the playbook schema", async () => {
    await expect(await generatePlaybookTypes()).toMatchFileSnapshot(TYPES_FILE);
  });
});
