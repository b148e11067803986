/**
 * Validators of the JSON reclaim writes (schemas/plan, apply-result, report), compiled the way a
 * consumer would: ajv's draft 2020-12 build, strict, with ajv-formats for `date-time`, and the
 * schemas that refer to each other loaded together.
 */
import { readFileSync } from "node:fs";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import formats from "ajv-formats";

export type OutputSchema = "plan" | "apply-result" | "report";
export const OUTPUT_SCHEMAS: readonly OutputSchema[] = ["plan", "apply-result", "report"];

export function readSchema(name: string): Record<string, unknown> {
  return JSON.parse(
    readFileSync(new URL(`../../schemas/${name}.schema.json`, import.meta.url), "utf8"),
  ) as Record<string, unknown>;
}

let ajv: Ajv2020 | undefined;

export function outputValidator(name: OutputSchema): ValidateFunction {
  if (!ajv) {
    ajv = new Ajv2020({ allErrors: true, strict: true });
    formats.default(ajv);
    for (const schema of OUTPUT_SCHEMAS) ajv.addSchema(readSchema(schema));
  }
  const validate = ajv.getSchema(`https://reclaim.dev/schemas/${name}.schema.json`);
  if (!validate) throw new Error(`schema ${name} is not loaded`);
  return validate;
}

/** ajv's complaints, one line each, or [] when the value is valid: a readable test failure. */
export function schemaErrors(name: OutputSchema, value: unknown): string[] {
  const validate = outputValidator(name);
  if (validate(value)) return [];
  return (validate.errors ?? []).map(
    (e) => `${e.instancePath || "/"} ${e.message ?? ""} ${JSON.stringify(e.params)}`,
  );
}
