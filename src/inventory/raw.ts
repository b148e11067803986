/**
 * The inventory as written, before any of Ansible's rules apply. Both readers (YAML and INI)
 * produce this and one resolver consumes it, so the two formats cannot resolve differently.
 */
import type { Diagnostic } from "../config/diagnostic.js";

/** 1-based, like Diagnostic. */
export interface Position {
  line: number;
  column: number;
}

export interface RawHost {
  /** One host: ranges such as kvm[01:03] are already expanded by the reader. */
  name: string;
  at: Position;
  vars: Record<string, unknown>;
}

export interface RawChild {
  name: string;
  /** Where the parent names this child: a cycle is reported here. */
  at: Position;
}

/** One place that declares a group; a group may be declared in several places, the resolver merges them. */
export interface RawGroup {
  name: string;
  at: Position;
  hosts: RawHost[];
  children: RawChild[];
  vars: Record<string, unknown>;
}

export interface RawInventory {
  file: string;
  groups: RawGroup[];
}

/** What a reader returns: as much of the inventory as it could read, and every problem it saw. */
export interface RawRead {
  raw: RawInventory;
  diagnostics: Diagnostic[];
}

/** An empty declaration of `name` at `at`, for readers to fill. */
export function rawGroup(name: string, at: Position): RawGroup {
  return { name, at, hosts: [], children: [], vars: {} };
}

/** Order by place in the file, so "first" and "later" mean what a reader of the file sees. */
export function byPosition(a: { at: Position }, b: { at: Position }): number {
  return a.at.line - b.at.line || a.at.column - b.at.column;
}

/**
 * Sets `vars[key]` in place, as data: a variable named __proto__ stays a variable (assignment would
 * set the prototype), and merging many declarations costs no copy of what was merged before.
 */
export function defineVar(vars: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(vars, key, { value, writable: true, enumerable: true, configurable: true });
}
