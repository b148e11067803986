/**
 * Ansible's YAML inventory format: read with positions, checked against the schema, then turned
 * into the raw structure the resolver shares with the INI reader.
 */
import type { Diagnostic } from "../config/diagnostic.js";
import { checkSchema, schemaValidator } from "../config/schema-check.js";
import {
  diagnosticAt,
  locate,
  parseYaml,
  type SourceDocument,
  type YamlPath,
} from "../config/yaml-source.js";
import { expandHostPattern, MAX_INVENTORY_HOSTS, TOO_MANY_HOSTS } from "./host-range.js";
import { type RawInventory, type RawRead, rawGroup } from "./raw.js";
import { checkVar } from "./vars.js";

/** Children nested deeper than this are no real inventory; the limit keeps recursion off the stack's edge. */
export const MAX_GROUP_DEPTH = 100;

interface Reading {
  src: SourceDocument;
  raw: RawInventory;
  diagnostics: Diagnostic[];
  /** Set when a group was nested past MAX_GROUP_DEPTH. */
  tooDeep: boolean;
  /** Hosts read so far, ranges expanded; past MAX_INVENTORY_HOSTS the rest are reported, not kept. */
  hosts: number;
}

/** Every problem in a YAML inventory (syntax, schema, host patterns) and what could be read of it. */
export function readYamlInventory(file: string, text: string): RawRead {
  const src = parseYaml(file, text);
  const reading: Reading = { src, raw: { file, groups: [] }, diagnostics: [], tooDeep: false, hosts: 0 };
  // Syntax errors and duplicate keys leave src.value untrustworthy: report them alone.
  if (src.diagnostics.length > 0) return { raw: reading.raw, diagnostics: src.diagnostics };
  if (isRecord(src.value)) {
    for (const [name, definition] of Object.entries(src.value))
      readGroup(reading, name, definition, [name], 1);
  }
  // A document nested too deep for the reader would overflow the validator's recursion too.
  if (!reading.tooDeep) reading.diagnostics.push(...checkSchema(src, schemaValidator("inventory")));
  return { raw: reading.raw, diagnostics: reading.diagnostics };
}

/** Reads what it can: the schema has already said what is wrong with anything it skips. */
function readGroup(reading: Reading, name: string, definition: unknown, path: YamlPath, depth: number): void {
  const { src, raw, diagnostics } = reading;
  const group = rawGroup(name, locate(src, path, "key"));
  raw.groups.push(group);
  if (depth > MAX_GROUP_DEPTH) {
    reading.tooDeep = true;
    diagnostics.push(
      diagnosticAt(src, path, `group '${name}' is nested more than ${MAX_GROUP_DEPTH} deep`, "key"),
    );
    return;
  }
  if (!isRecord(definition)) return;
  if (isRecord(definition.vars)) group.vars = { ...definition.vars };
  if (isRecord(definition.hosts)) {
    for (const [pattern, vars] of Object.entries(definition.hosts)) {
      // Past the limit (already reported), ranges are not even expanded.
      if (reading.hosts > MAX_INVENTORY_HOSTS) break;
      const hostPath = [...path, "hosts", pattern];
      const at = locate(src, hostPath, "key");
      const expanded = expandHostPattern(pattern);
      if ("error" in expanded) {
        diagnostics.push({ file: src.file, ...at, message: expanded.error });
        continue;
      }
      if (reading.hosts + expanded.names.length > MAX_INVENTORY_HOSTS) {
        if (reading.hosts <= MAX_INVENTORY_HOSTS)
          diagnostics.push({ file: src.file, ...at, message: TOO_MANY_HOSTS });
        reading.hosts = MAX_INVENTORY_HOSTS + 1;
        continue;
      }
      reading.hosts += expanded.names.length;
      let hostVars = isRecord(vars) ? { ...vars } : {};
      if (expanded.port !== undefined) {
        const problem = checkVar("ansible_port", expanded.port);
        if (problem) diagnostics.push({ file: src.file, ...at, message: `${pattern}: port ${problem}` });
        // As in Ansible, a port written in the host's own variables wins over the one in its name.
        hostVars = { ansible_port: expanded.port, ...hostVars };
      }
      for (const host of expanded.names) group.hosts.push({ name: host, at, vars: hostVars });
    }
  }
  if (isRecord(definition.children)) {
    for (const [child, childDefinition] of Object.entries(definition.children)) {
      const childPath = [...path, "children", child];
      group.children.push({ name: child, at: locate(src, childPath, "key") });
      readGroup(reading, child, childDefinition, childPath, depth + 1);
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
