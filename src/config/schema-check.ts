/**
 * Runs a JSON Schema (the single source of truth in schemas/) over a parsed YAML document and turns
 * every ajv error into a positioned, human message: what was found, what was expected, and a
 * suggestion for a misspelt key.
 */
import { readFileSync } from "node:fs";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { closest, distance } from "fastest-levenshtein";
import type { Diagnostic } from "./diagnostic.js";
import { diagnosticAt, type SourceDocument, type YamlPath } from "./yaml-source.js";

const compiled = new Map<string, ValidateFunction>();

/**
 * The validator of schemas/NAME.schema.json, compiled once. The schemas folder sits two levels
 * above this file both in src/config/ and in dist/config/.
 */
export function schemaValidator(name: "playbook" | "inventory"): ValidateFunction {
  let validate = compiled.get(name);
  if (!validate) {
    const url = new URL(`../../schemas/${name}.schema.json`, import.meta.url);
    validate = compileSchema(JSON.parse(readFileSync(url, "utf8")) as object);
    compiled.set(name, validate);
  }
  return validate;
}

/** Compile a schema with the options every reclaim schema is written for. */
export function compileSchema(schema: object): ValidateFunction {
  // verbose: errors carry their parentSchema, which the messages need (allowed keys, patternErrorMessage).
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
  // VS Code's and yaml-language-server's keyword for a readable pattern failure; ours too.
  ajv.addKeyword({ keyword: "patternErrorMessage", schemaType: "string" });
  return ajv.compile(schema);
}

/** Every schema problem in the document, one diagnostic per offending place. */
export function checkSchema(src: SourceDocument, validate: ValidateFunction): Diagnostic[] {
  if (validate(src.value)) return [];
  const errors = dropImplied(validate.errors ?? []);
  const seen = new Set<string>();
  const out: Diagnostic[] = [];
  for (const error of errors) {
    const d = toDiagnostic(src, error);
    const key = `${d.line}:${d.column}:${d.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(d);
    }
  }
  return out;
}

/** A wrong type at a path makes the other complaints about the same value noise. */
function dropImplied(errors: readonly ErrorObject[]): ErrorObject[] {
  const typed = new Set(errors.filter((e) => e.keyword === "type").map((e) => e.instancePath));
  return errors.filter((e) => e.keyword === "type" || !typed.has(e.instancePath) || e.keyword === "required");
}

function pathOf(instancePath: string): YamlPath {
  if (instancePath === "") return [];
  return instancePath
    .slice(1)
    .split("/")
    .map((raw) => raw.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function where(path: YamlPath): string {
  const named = path.filter((s): s is string => typeof s === "string");
  return named.length ? `${named.join(".")}: ` : "";
}

function toDiagnostic(src: SourceDocument, e: ErrorObject): Diagnostic {
  const path = pathOf(e.instancePath);
  const schema = (e.parentSchema ?? {}) as Record<string, unknown>;
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case "additionalProperties": {
      const key = String(p.additionalProperty);
      const allowed = Object.keys((schema.properties as object | undefined) ?? {});
      return diagnosticAt(
        src,
        [...path, key],
        `${where(path)}unknown key '${key}'${suggest(key, allowed)}`,
        "key",
      );
    }
    case "required":
      return diagnosticAt(src, path, `${where(path)}missing required key '${String(p.missingProperty)}'`);
    case "type":
      return diagnosticAt(
        src,
        path,
        `${where(path)}expected ${article(String(p.type))}, found ${describe(src.value, path)}`,
      );
    case "enum":
      return diagnosticAt(
        src,
        path,
        `${where(path)}expected one of ${(p.allowedValues as unknown[]).map(String).join(", ")}, found ${describe(src.value, path)}`,
      );
    case "pattern":
      return diagnosticAt(
        src,
        path,
        `${where(path)}${String(schema.patternErrorMessage ?? `does not match ${String(p.pattern)}`)}, found ${describe(src.value, path)}`,
      );
    case "minItems":
      return diagnosticAt(src, path, `${where(path)}expected at least ${String(p.limit)} item(s)`);
    case "uniqueItems":
      return diagnosticAt(
        src,
        path,
        `${where(path)}items must be unique (items ${String(p.j)} and ${String(p.i)} are equal)`,
      );
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum":
      return diagnosticAt(src, path, `${where(path)}must be ${String(p.comparison)} ${String(p.limit)}`);
    case "minLength":
      return diagnosticAt(src, path, `${where(path)}must not be empty`);
    default:
      return diagnosticAt(src, path, `${where(path)}${e.message ?? "is invalid"}`);
  }
}

function suggest(key: string, allowed: readonly string[]): string {
  if (allowed.length === 0) return "";
  const best = closest(key, [...allowed]);
  const near = distance(key, best) <= Math.max(2, Math.floor(key.length / 3));
  return near ? `; did you mean '${best}'?` : `; expected one of ${allowed.join(", ")}`;
}

function article(type: string): string {
  const names = type
    .split(",")
    .map((t) =>
      t === "object" ? "a mapping" : t === "array" ? "a list" : t === "integer" ? "an integer" : `a ${t}`,
    );
  return names.join(" or ");
}

function describe(root: unknown, path: YamlPath): string {
  let v: unknown = root;
  for (const s of path) v = (v as Record<string | number, unknown> | null | undefined)?.[s];
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${JSON.stringify(v)}`;
}
