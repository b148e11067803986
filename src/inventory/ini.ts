/**
 * Ansible's INI inventory format, read by hand: no maintained npm INI parser knows its dialect
 * (`[group:children]`, `host key=value` lines, host ranges), and every malformed line must be
 * reported at its line and column. All problems are collected; reading goes on after each.
 *
 *   localhost ansible_connection=local   # before any section: a host in no group
 *   [lab]
 *   kvm[01:02] ansible_user=reclaim      # a host line: pattern, then key=value words
 *   [hypervisors:children]
 *   lab                                  # one group name a line
 *   [hypervisors:vars]
 *   ansible_become=yes                   # one key=value a line
 */
import type { Diagnostic } from "../config/diagnostic.js";
import { expandHostPattern, MAX_INVENTORY_HOSTS, TOO_MANY_HOSTS } from "./host-range.js";
import { iniValue, splitWords, withoutComment } from "./ini-words.js";
import { defineVar, type RawGroup, type RawInventory, type RawRead, rawGroup } from "./raw.js";
import { checkVar, TEXT_VARS } from "./vars.js";

type SectionKind = "hosts" | "vars" | "children";

/** Where lines go; undefined after a malformed header, so its lines are not misread as another group's. */
type Section = { kind: SectionKind; group: RawGroup } | undefined;

/** Ansible's section header: `[name]`, `[name:vars]`, `[name:children]`, then an optional comment. */
const HEADER = /^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$/;

/** Ansible's group names in a :children section: no whitespace, ':' or ']'. */
const GROUP_NAME = /^[^:\]\s]+$/;

interface Reading {
  file: string;
  raw: RawInventory;
  diagnostics: Diagnostic[];
  /** Groups a [name] or [name:children] section defines; [name:vars] alone defines nothing. */
  defined: Set<string>;
  /** [name:vars] sections, checked against `defined` at the end. */
  varSections: { name: string; line: number; column: number }[];
  /** Hosts read so far, ranges expanded; past MAX_INVENTORY_HOSTS the rest are reported, not kept. */
  hosts: number;
}

/** Every problem in an INI inventory and what could be read of it. */
export function readIniInventory(file: string, text: string): RawRead {
  const reading: Reading = {
    file,
    raw: { file, groups: [] },
    diagnostics: [],
    defined: new Set(["all", "ungrouped"]),
    varSections: [],
    hosts: 0,
  };
  // Hosts above the first section belong to no group but `all`, as hosts directly under `all:` in YAML.
  let section: Section = { kind: "hosts", group: declare(reading, "all", 1, 1) };
  text.split(/\r\n|\r|\n/).forEach((line, index) => {
    const lineNo = index + 1;
    const start = line.search(/\S/);
    if (start < 0) return;
    const body = line.slice(start).trimEnd();
    if (body.startsWith("#") || body.startsWith(";")) return;
    if (body.startsWith("[")) {
      section = readHeader(reading, body, lineNo, start);
    } else if (section?.kind === "hosts") {
      readHostLine(reading, section.group, body, lineNo, start);
    } else if (section?.kind === "vars") {
      readVarLine(reading, section.group, body, lineNo, start);
    } else if (section?.kind === "children") {
      readChildLine(reading, section.group, body, lineNo, start);
    }
  });
  reportUndefinedGroups(reading);
  return { raw: reading.raw, diagnostics: reading.diagnostics };
}

/**
 * Ansible's INI reader refuses a group that is only ever named in a :children or :vars section
 * (unlike its YAML reader): there it is almost always a typo, so we refuse it too.
 */
function reportUndefinedGroups(reading: Reading): void {
  for (const group of reading.raw.groups) {
    for (const child of group.children) {
      if (!reading.defined.has(child.name)) {
        report(
          reading,
          child.at.line,
          child.at.column,
          `[${group.name}:children] names group '${child.name}', which is never defined (no [${child.name}] section)`,
        );
      }
    }
  }
  for (const section of reading.varSections) {
    if (!reading.defined.has(section.name)) {
      report(
        reading,
        section.line,
        section.column,
        `[${section.name}:vars] is for a group that is never defined (no [${section.name}] section)`,
      );
    }
  }
}

function declare(reading: Reading, name: string, line: number, column: number): RawGroup {
  const group = rawGroup(name, { line, column });
  reading.raw.groups.push(group);
  return group;
}

function report(reading: Reading, line: number, column: number, message: string): void {
  reading.diagnostics.push({ file: reading.file, line, column, message });
}

function readHeader(reading: Reading, body: string, line: number, start: number): Section {
  const header = HEADER.exec(body);
  if (!header) {
    report(
      reading,
      line,
      start + 1,
      `malformed section header: expected [group], [group:vars] or [group:children], with no spaces`,
    );
    return undefined;
  }
  const [, name = "", kind = "hosts"] = header;
  if (kind !== "hosts" && kind !== "vars" && kind !== "children") {
    const column = start + 1 + body.indexOf(`:${kind}`) + 1;
    report(
      reading,
      line,
      column,
      `unknown section type '${kind}': expected [${name}], [${name}:vars] or [${name}:children]`,
    );
    return undefined;
  }
  if (kind === "vars") reading.varSections.push({ name, line, column: start + 2 });
  else reading.defined.add(name);
  return { kind, group: declare(reading, name, line, start + 2) };
}

/** `pattern key=value ...`: one host, or several when the pattern holds a range. */
function readHostLine(reading: Reading, group: RawGroup, body: string, line: number, start: number): void {
  const split = splitWords(body, start);
  if ("error" in split) {
    report(reading, line, split.column, split.error);
    return;
  }
  const [pattern, ...assignments] = split.words;
  // Past the limit (already reported), ranges are not even expanded.
  if (!pattern || reading.hosts > MAX_INVENTORY_HOSTS) return;
  const expanded = expandHostPattern(pattern.text);
  if ("error" in expanded) {
    report(reading, line, pattern.column, expanded.error);
    return;
  }
  if (reading.hosts + expanded.names.length > MAX_INVENTORY_HOSTS) {
    if (reading.hosts <= MAX_INVENTORY_HOSTS) report(reading, line, pattern.column, TOO_MANY_HOSTS);
    reading.hosts = MAX_INVENTORY_HOSTS + 1;
    return;
  }
  reading.hosts += expanded.names.length;
  const entries: [string, unknown][] = [];
  if (expanded.port !== undefined) {
    const problem = checkVar("ansible_port", expanded.port);
    if (problem) report(reading, line, pattern.column, `${pattern.text}: port ${problem}`);
    entries.push(["ansible_port", expanded.port]);
  }
  for (const word of assignments) {
    const eq = word.text.indexOf("=");
    if (eq <= 0) {
      const message =
        eq < 0
          ? `expected key=value after the host, found '${word.text}'`
          : "expected a variable name before '='";
      report(reading, line, word.column, message);
      continue;
    }
    const key = word.text.slice(0, eq);
    const value = iniValue(word.text.slice(eq + 1), TEXT_VARS.has(key));
    checkAt(reading, key, value, line, word.column + eq + 1);
    entries.push([key, value]);
  }
  // fromEntries defines each key as data, so a variable named __proto__ stays a variable.
  const vars = Object.fromEntries(entries);
  const at = { line, column: pattern.column };
  for (const name of expanded.names) group.hosts.push({ name, at, vars });
}

/** `key=value` in a [group:vars] section. */
function readVarLine(reading: Reading, group: RawGroup, body: string, line: number, start: number): void {
  const text = withoutComment(body);
  const eq = text.indexOf("=");
  const key = text.slice(0, Math.max(eq, 0)).trim();
  if (eq < 0 || key === "") {
    const message =
      eq < 0
        ? `expected key=value in [${group.name}:vars], found '${text}'`
        : "expected a variable name before '='";
    report(reading, line, start + 1, message);
    return;
  }
  const after = text.slice(eq + 1);
  const valueText = after.trim();
  const value = iniValue(valueText, TEXT_VARS.has(key));
  checkAt(reading, key, value, line, start + eq + 2 + (after.length - after.trimStart().length));
  defineVar(group.vars, key, value);
}

/** One group name in a [group:children] section. */
function readChildLine(reading: Reading, group: RawGroup, body: string, line: number, start: number): void {
  const name = withoutComment(body);
  if (!GROUP_NAME.test(name)) {
    let bad = name.search(/[:\]\s]/);
    // After a space, point at the extra word rather than at the space.
    if (/\s/.test(name.charAt(bad))) bad += name.slice(bad).search(/\S/);
    report(
      reading,
      line,
      start + bad + 1,
      `expected one group name a line in [${group.name}:children], found '${name}'`,
    );
    return;
  }
  group.children.push({ name, at: { line, column: start + 1 } });
}

function checkAt(reading: Reading, key: string, value: unknown, line: number, column: number): void {
  const problem = checkVar(key, value);
  if (problem) report(reading, line, column, `${key}: ${problem}`);
}
