/**
 * `reclaim schema NAME`: prints a JSON Schema, for editors and other tools: the files reclaim
 * reads (playbook, inventory) and the JSON it writes (plan, apply-result, report).
 */
import { readFile } from "node:fs/promises";
import { UsageError } from "../../errors.js";
import { type CliIo, print } from "../io.js";

const SCHEMAS = ["playbook", "inventory", "plan", "apply-result", "report"] as const;

export async function schemaCommand(name: string, io: CliIo): Promise<number> {
  if (!(SCHEMAS as readonly string[]).includes(name)) {
    throw new UsageError(`schema: unknown schema '${name}'; expected one of ${SCHEMAS.join(", ")}`);
  }
  const url = new URL(`../../../schemas/${name}.schema.json`, import.meta.url);
  print(io.stdout, await readFile(url, "utf8"));
  return 0;
}
