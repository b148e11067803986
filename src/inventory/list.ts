/** The inventory in the JSON shape of `ansible-inventory --list`, for tools and eyes used to it. */
import type { Inventory } from "./model.js";

export interface ListedGroup {
  hosts?: string[];
  children?: string[];
}

export interface ListedMeta {
  hostvars: Record<string, Record<string, unknown>>;
}

export interface InventoryList {
  _meta: ListedMeta;
  [group: string]: ListedGroup | ListedMeta;
}

/**
 * As ansible-inventory prints it: `_meta.hostvars` with each host's resolved variables (hosts
 * without any left out), `all` with its children only, then each group with its direct hosts and
 * its children; empty lists are left out, and so is a group with neither (it still shows among its
 * parent's children, as `ungrouped` often does). Groups come in inventory order, not sorted.
 */
export function listInventory(inventory: Inventory): InventoryList {
  const hostvars = Object.fromEntries(
    inventory.hosts.filter((h) => Object.keys(h.vars).length > 0).map((h) => [h.name, { ...h.vars }]),
  );
  const list: InventoryList = { _meta: { hostvars } };
  for (const group of inventory.groups) {
    const listed: ListedGroup = {};
    if (group.name !== "all" && group.hosts.length > 0) listed.hosts = [...group.hosts];
    if (group.children.length > 0) listed.children = [...group.children];
    if (listed.hosts || listed.children) list[group.name] = listed;
  }
  return list;
}
