/**
 * The host variables reclaim reads to reach a host, and how it reads them. The YAML reader checks
 * them through schemas/inventory.schema.json; INI has no schema, so its reader checks them here
 * (a test keeps the two in agreement).
 */

/** `smart` and `paramiko` are Ansible's other names for SSH; reclaim has one SSH client for all three. */
export const CONNECTIONS = ["local", "ssh", "smart", "paramiko"] as const;

/** Ansible's spellings of a boolean in a string (module_utils' boolean()), as the schema lists them. */
const TRUE_WORDS = ["true", "yes", "on"];
const FALSE_WORDS = ["false", "no", "off"];

/** A problem with a value, phrased to follow the variable's name: "must be …, found …". */
type Check = (value: unknown) => string | undefined;

const text: Check = (v) =>
  typeof v !== "string" || v === ""
    ? `must be a non-empty string, found ${describe(v)}`
    : // A resolver or a log line would read a NUL or a line break otherwise than written.
      [...v].some((c) => c < " " || c === "\u007f")
      ? "must not hold control characters (a line break, a NUL)"
      : undefined;

const becomeUser: Check = (v) =>
  v === "root" ? undefined : `reclaim only becomes root (its host steps need root), found ${describe(v)}`;

const port: Check = (v) =>
  toPort(v) === undefined ? `must be a port number from 1 to 65535, found ${describe(v)}` : undefined;

const connection: Check = (v) =>
  typeof v === "string" && (CONNECTIONS as readonly string[]).includes(v)
    ? undefined
    : `expected one of ${CONNECTIONS.join(", ")}, found ${describe(v)}`;

const flag: Check = (v) =>
  typeof v === "boolean" || (typeof v === "string" && booleanWord(v) !== undefined)
    ? undefined
    : `must be true or false (or yes/no, on/off), found ${describe(v)}`;

const CHECKS: Readonly<Record<string, Check>> = {
  ansible_host: text,
  ansible_port: port,
  ansible_user: text,
  ansible_connection: connection,
  ansible_ssh_private_key_file: text,
  ansible_become: flag,
  ansible_become_user: becomeUser,
};

/** The variables reclaim reads; any other variable is carried along unchecked. */
export const HONOURED_VARS: readonly string[] = Object.keys(CHECKS);

/** The honoured variables whose values are text: an INI reader keeps `ansible_user=1000` a string. */
export const TEXT_VARS: ReadonlySet<string> = new Set(
  Object.entries(CHECKS)
    .filter(([, check]) => check === text || check === connection || check === becomeUser)
    .map(([name]) => name),
);

/** What is wrong with `value` for the variable `name`, or undefined when it is fine or not one reclaim reads. */
export function checkVar(name: string, value: unknown): string | undefined {
  return Object.hasOwn(CHECKS, name) ? CHECKS[name]?.(value) : undefined;
}

/** A port from 1 to 65535, given as a number or a string of digits; undefined for anything else. */
export function toPort(value: unknown): number | undefined {
  const n = typeof value === "string" && /^[1-9][0-9]{0,4}$/.test(value) ? Number(value) : value;
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}

/** Ansible's reading of a become flag: true, or a word for true; anything else is false. */
export function toBoolean(value: unknown): boolean {
  return value === true || (typeof value === "string" && booleanWord(value) === true);
}

function booleanWord(word: string): boolean | undefined {
  // The schema accepts lower, Title and UPPER case; so do we, and no other mixture.
  const lower = word.toLowerCase();
  const cased =
    word === lower || word === word.toUpperCase() || word === lower.charAt(0).toUpperCase() + lower.slice(1);
  if (!cased) return undefined;
  if (TRUE_WORDS.includes(lower)) return true;
  return FALSE_WORDS.includes(lower) ? false : undefined;
}

/** The same wording as the schema's diagnostics, so both formats read alike. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${JSON.stringify(value)}`;
}
