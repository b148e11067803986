/** Reading the inventory fixtures, and what loadInventory reports about a broken one. */
import { readFileSync } from "node:fs";
import { expect } from "vitest";
import type { Diagnostic } from "../../../src/config/diagnostic.js";
import { ConfigError } from "../../../src/errors.js";
import { loadInventory } from "../../../src/inventory/load.js";
import type { Inventory } from "../../../src/inventory/model.js";

const FIXTURES = new URL("../../fixtures/inventory/", import.meta.url);

export function fixtureText(name: string): string {
  return readFileSync(new URL(name, FIXTURES), "utf8");
}

export function loadFixture(name: string): Inventory {
  return loadInventory(name, fixtureText(name));
}

/** The diagnostics loadInventory throws for `text`, as `line:column message` lines. */
export function problems(file: string, text: string): string[] {
  return diagnosticsOf(file, text).map((d) => `${d.line}:${d.column} ${d.message}`);
}

export function diagnosticsOf(file: string, text: string): readonly Diagnostic[] {
  try {
    loadInventory(file, text);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).diagnostics;
  }
  throw new Error(`${file} loaded without a problem`);
}
