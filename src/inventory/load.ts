/** Reading an inventory file, in either of Ansible's static formats, into the resolved Inventory. */
import { extname } from "node:path";
import { sortDiagnostics } from "../config/diagnostic.js";
import { sourceSizeProblem } from "../config/source-file.js";
import { ConfigError } from "../errors.js";
import { readIniInventory } from "./ini.js";
import type { Inventory } from "./model.js";
import { resolveInventory } from "./resolve.js";
import { readYamlInventory } from "./yaml.js";

export type InventoryFormat = "yaml" | "ini";

/**
 * The inventory in `text` (read from `file`, which only names it in messages and decides the format).
 * Throws ConfigError carrying every problem found, each at its line and column; nothing else.
 */
export function loadInventory(file: string, text: string): Inventory {
  const tooLarge = sourceSizeProblem(text);
  if (tooLarge) throw new ConfigError([{ file, line: 1, column: 1, message: tooLarge }]);
  // Editors on Windows may save a byte-order mark; it is not part of the first line.
  const body = text.replace(/^\uFEFF/, "");
  const read =
    inventoryFormat(file, body) === "yaml" ? readYamlInventory(file, body) : readIniInventory(file, body);
  const resolved = resolveInventory(read.raw);
  const diagnostics = [...read.diagnostics, ...resolved.diagnostics];
  if (diagnostics.length > 0) throw new ConfigError(sortDiagnostics(diagnostics));
  return resolved.inventory;
}

/**
 * By extension (.yml, .yaml, .json are YAML; .ini is INI); otherwise, like Ansible's extensionless
 * `hosts` files, by the first line that is not blank or a comment: a `key:` line, a `---` or a `{`
 * starts YAML, anything else (a `[section]`, a host line) INI.
 */
export function inventoryFormat(file: string, text: string): InventoryFormat {
  const ext = extname(file).toLowerCase();
  if (ext === ".yml" || ext === ".yaml" || ext === ".json") return "yaml";
  if (ext === ".ini") return "ini";
  // Line by line, stopping at the first that counts: a large file is not split whole.
  let first = "";
  for (const [line] of text.matchAll(/[^\r\n]+/g)) {
    if (/^\s*(?:[#;].*)?$/.test(line)) continue;
    first = line.trim();
    break;
  }
  const yamlStart =
    /^(?:---|%|\{)/.test(first) || /^(?:"[^"]*"|'[^']*'|[^\s[=#;][^=#]*?):(?:\s|$)/.test(first);
  return yamlStart ? "yaml" : "ini";
}
