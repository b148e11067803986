/** `reclaim inventory --list`: the resolved inventory as JSON, like `ansible-inventory --list`. */
import { refuseLargeSources } from "../../config/source-file.js";
import { UsageError } from "../../errors.js";
import { listInventory } from "../../inventory/list.js";
import { readInventory } from "../../run/workspace.js";
import { type CliIo, print } from "../io.js";

export async function inventoryCommand(
  options: { inventory?: string; list: boolean },
  io: CliIo,
): Promise<number> {
  if (!options.list) throw new UsageError("inventory: say what to show (--list)");
  if (options.inventory) await refuseLargeSources([options.inventory]);
  const inventory = await readInventory(options.inventory);
  print(io.stdout, JSON.stringify(listInventory(inventory), null, 2));
  return 0;
}
