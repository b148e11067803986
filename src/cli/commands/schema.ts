/** `reclaim schema playbook|inventory`: prints the JSON Schema, for editors and other tools. */
import { readFile } from "node:fs/promises";
import { UsageError } from "../../errors.js";
import { type CliIo, print } from "../io.js";

const SCHEMAS = ["playbook", "inventory"] as const;

export async function schemaCommand(name: string, io: CliIo): Promise<number> {
  if (!(SCHEMAS as readonly string[]).includes(name)) {
    throw new UsageError(`schema: unknown schema '${name}'; expected one of ${SCHEMAS.join(", ")}`);
  }
  const url = new URL(`../../../schemas/${name}.schema.json`, import.meta.url);
  print(io.stdout, await readFile(url, "utf8"));
  return 0;
}
