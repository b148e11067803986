/** schemas/inventory.schema.json (also served to editors), read and compiled once. */
import { readFileSync } from "node:fs";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";

/** From src/inventory/ and from dist/inventory/ alike, the schemas folder is two levels up. */
const SCHEMA_URL = new URL("../../schemas/inventory.schema.json", import.meta.url);

let validator: ValidateFunction | undefined;

export function inventorySchema(): Record<string, unknown> {
  return JSON.parse(readFileSync(SCHEMA_URL, "utf8")) as Record<string, unknown>;
}

/** The validator for checkSchema(). */
export function inventoryValidator(): ValidateFunction {
  validator ??= compileVerbose(inventorySchema());
  return validator;
}

/**
 * compileSchema() in config/schema-check.ts does not set ajv's `verbose`, so its errors carry no
 * `parentSchema` and checkSchema() can neither suggest a key ("did you mean 'children'?") nor use
 * patternErrorMessage. Same options plus verbose, until compileSchema sets it; then use compileSchema.
 */
function compileVerbose(schema: object): ValidateFunction {
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
  ajv.addKeyword({ keyword: "patternErrorMessage", schemaType: "string" });
  return ajv.compile(schema);
}
