/**
 * Read and validate everything the user wrote, reporting every problem in every file at once.
 */
import type { Diagnostic } from "../config/diagnostic.js";
import type { Play } from "../config/model.js";
import { readPlaybook } from "../config/playbook.js";
import { checkInventoryReferences } from "../config/references.js";
import { readSourceFile } from "../config/source-file.js";
import { ConfigError } from "../errors.js";
import { loadInventory } from "../inventory/load.js";
import type { Inventory } from "../inventory/model.js";

export interface Workspace {
  inventory: Inventory;
  plays: Play[];
}

/** Ansible's implicit inventory: just this machine, reached without SSH. */
export function implicitInventory(): Inventory {
  return {
    file: "(implicit localhost)",
    hosts: [
      {
        name: "localhost",
        connection: { kind: "local" },
        become: false,
        vars: {},
        groups: ["all", "ungrouped"],
      },
    ],
    groups: [
      { name: "all", hosts: [], children: ["ungrouped"], vars: {} },
      { name: "ungrouped", hosts: ["localhost"], children: [], vars: {} },
    ],
  };
}

export async function readInventory(file: string | undefined): Promise<Inventory> {
  if (file === undefined) return implicitInventory();
  return loadInventory(file, await readText(file));
}

export async function loadWorkspace(
  inventoryFile: string | undefined,
  playbookFiles: readonly string[],
): Promise<Workspace> {
  const diagnostics: Diagnostic[] = [];
  let inventory: Inventory | undefined;
  try {
    inventory = await readInventory(inventoryFile);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    diagnostics.push(...error.diagnostics);
  }
  const plays: Play[] = [];
  for (const file of playbookFiles) {
    const text = await readText(file).catch((error: unknown) => {
      if (!(error instanceof ConfigError)) throw error;
      diagnostics.push(...error.diagnostics);
      return undefined;
    });
    if (text === undefined) continue;
    const read = readPlaybook(file, text);
    diagnostics.push(...read.diagnostics);
    if (!read.playbook) continue;
    plays.push(...read.playbook.plays);
    if (inventory) diagnostics.push(...checkInventoryReferences(read.playbook, inventory));
  }
  if (diagnostics.length > 0 || !inventory) throw new ConfigError(diagnostics);
  return { inventory, plays };
}

async function readText(file: string): Promise<string> {
  try {
    // Bounded: a pipe or /dev/zero named as a playbook is refused at the size limit.
    return await readSourceFile(file);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : (error as Error).message;
    throw new ConfigError([{ file, line: 1, column: 1, message: `cannot read: ${why}` }]);
  }
}
