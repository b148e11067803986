/**
 * Ansible's host patterns in inventory files: `name`, `name:port`, and ranges such as
 * `kvm[01:03]`, `db[a:c]`, `web[1:9:2]` (several ranges multiply out). Shared by both readers.
 */

/** A range that would create more hosts than this is surely a typo (kvm[1:100000000]), and would exhaust memory. */
export const MAX_HOSTS_PER_PATTERN = 10_000;

/**
 * Hosts in one inventory, counting each range's expansion and each place a host is written: twice
 * the 50,000-host inventory the loaders are measured with. Without it, ranges each within the limit
 * above could name millions (2,000 lines of `h[1:9999]` took a minute and 3 GiB before failing).
 */
export const MAX_INVENTORY_HOSTS = 100_000;

/** The problem once an inventory names more than MAX_INVENTORY_HOSTS hosts. */
export const TOO_MANY_HOSTS = `more than ${MAX_INVENTORY_HOSTS} hosts in the inventory (each range expanded, each host counted wherever it is written): expected at most ${MAX_INVENTORY_HOSTS}`;

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

export type ExpandedHosts = { names: string[]; port?: number } | { error: string };

/** The hosts a pattern names, in Ansible's order, with the port it gives them if any. */
export function expandHostPattern(pattern: string): ExpandedHosts {
  const split = splitPort(pattern);
  if ("error" in split) return split;
  if (split.name === "") return { error: `host pattern '${pattern}' has no host name` };
  const names = expandRanges(split.name);
  if ("error" in names) return { error: `host pattern '${pattern}': ${names.error}` };
  return split.port === undefined ? { names } : { names, port: split.port };
}

/**
 * A colon outside the brackets of a range gives the port, as in `kvm01:2222`. Several colons make an
 * IPv6 address, taken whole: its port goes in ansible_port (Ansible's `[::1]:22` is not read here).
 */
function splitPort(pattern: string): { name: string; port?: number } | { error: string } {
  const outside = pattern.replace(/\[[^\]]*(?:\]|$)/g, (range) => "_".repeat(range.length));
  const colon = outside.indexOf(":");
  if (colon < 0 || outside.indexOf(":", colon + 1) >= 0) return { name: pattern };
  const port = pattern.slice(colon + 1);
  if (!/^[0-9]+$/.test(port)) return { error: `host pattern '${pattern}': expected a port number after ':'` };
  return { name: pattern.slice(0, colon), port: Number(port) };
}

function expandRanges(name: string): string[] | { error: string } {
  const open = name.indexOf("[");
  if (open < 0) return [name];
  const close = name.indexOf("]", open);
  if (close < 0) return { error: "'[' without a closing ']'" };
  const values = rangeValues(name.slice(open + 1, close));
  if ("error" in values) return values;
  const head = name.slice(0, open);
  const tails = expandRanges(name.slice(close + 1));
  if ("error" in tails) return tails;
  if (values.length * tails.length > MAX_HOSTS_PER_PATTERN) {
    return { error: `expands to more than ${MAX_HOSTS_PER_PATTERN} hosts` };
  }
  return values.flatMap((value) => tails.map((tail) => head + value + tail));
}

/** `01:03` → 01 02 03 (zero padding kept), `a:c` → a b c, an optional third part is the step. */
function rangeValues(range: string): string[] | { error: string } {
  const bounds = range.split(":");
  if (bounds.length !== 2 && bounds.length !== 3)
    return { error: "a range must be [begin:end] or [begin:end:step]" };
  const [begin = "", end = "", stepText = "1"] = bounds;
  if (end === "") return { error: "a range needs an end value" };
  if (!/^[0-9]+$/.test(stepText) || Number(stepText) === 0)
    return { error: "a range's step must be a whole number above 0" };
  const step = Number(stepText);
  if (/^[a-zA-Z]$/.test(begin) && /^[a-zA-Z]$/.test(end)) return letterRange(begin, end, step);
  // An empty begin counts from 0, as in Ansible.
  const first = begin === "" ? "0" : begin;
  if (!/^[0-9]+$/.test(first) || !/^[0-9]+$/.test(end))
    return { error: "a range's bounds must be both numbers or both letters" };
  const padded = first.length > 1 && first.startsWith("0");
  if (padded && first.length !== end.length) {
    return { error: "a zero-padded range needs begin and end of the same width" };
  }
  const from = Number(first);
  const to = Number(end);
  if (from > to) return { error: "a range must not end before it begins" };
  if ((to - from) / step >= MAX_HOSTS_PER_PATTERN)
    return { error: `expands to more than ${MAX_HOSTS_PER_PATTERN} hosts` };
  const values: string[] = [];
  for (let n = from; n <= to; n += step)
    values.push(padded ? String(n).padStart(first.length, "0") : String(n));
  return values;
}

function letterRange(begin: string, end: string, step: number): string[] | { error: string } {
  const from = LETTERS.indexOf(begin);
  const to = LETTERS.indexOf(end);
  if (from > to) return { error: "a range must not end before it begins" };
  const values: string[] = [];
  for (let i = from; i <= to; i += step) values.push(LETTERS.charAt(i));
  return values;
}
