/**
 * Ansible's host patterns, which choose the hosts a play runs on:
 *
 *   all, *              every host
 *   lab, kvm01          a group (with its child groups) or a host
 *   kvm0*, kvm0[12]     wildcards, over group and host names
 *   a:b  or  a,b        union
 *   a:&b                intersection: in a and in b
 *   a:!b                exclusion: in a but not in b
 *
 * As in Ansible, unions are taken first, then intersections, then exclusions, whatever the order
 * written, and a pattern of only `&`/`!` terms starts from `all`. Not supported: `~regex` terms and
 * `group[0:2]` subscripts (a trailing `[...]` is a wildcard set here).
 */
import { globToRegExp, isGlob } from "./glob.js";
import type { Inventory } from "./model.js";

export type HostSelection = { hosts: string[] } | { error: string };

interface Term {
  op: "" | "&" | "!";
  name: string;
}

/** The hosts `pattern` selects, in inventory order; or why it cannot select any. */
export function selectHosts(inventory: Inventory, pattern: string): HostSelection {
  const terms = splitPattern(pattern);
  if (terms.length === 0) return { error: "the host pattern is empty" };
  const matched: { term: Term; hosts: Set<string> }[] = [];
  const problems: string[] = [];
  for (const term of terms) {
    const hosts =
      term.name === ""
        ? `'${term.op}' must be followed by a host or group name`
        : matchTerm(inventory, term.name);
    if (typeof hosts === "string") problems.push(hosts);
    else matched.push({ term, hosts });
  }
  if (problems.length > 0) return { error: problems.join("; ") };
  const unions = matched.filter((m) => m.term.op === "");
  let chosen =
    unions.length > 0
      ? new Set(unions.flatMap((m) => [...m.hosts]))
      : new Set(inventory.hosts.map((h) => h.name));
  for (const { term, hosts } of matched)
    if (term.op === "&") chosen = new Set([...chosen].filter((h) => hosts.has(h)));
  for (const { term, hosts } of matched)
    if (term.op === "!") chosen = new Set([...chosen].filter((h) => !hosts.has(h)));
  return { hosts: inventory.hosts.map((h) => h.name).filter((h) => chosen.has(h)) };
}

/**
 * Terms split at commas when there are any (so a term may hold a colon), otherwise at colons and
 * whitespace outside brackets, as Ansible's split_host_pattern does.
 */
function splitPattern(pattern: string): Term[] {
  const parts = pattern.includes(",")
    ? pattern.split(",")
    : (pattern.match(/(?:[^\s:[\]]|\[[^\]]*\])+/g) ?? []);
  return parts
    .map((p) => p.trim())
    .filter((p) => p !== "")
    .map((p) =>
      p.startsWith("&") || p.startsWith("!")
        ? { op: p.charAt(0) as "&" | "!", name: p.slice(1) }
        : { op: "", name: p },
    );
}

/**
 * The hosts of every group whose name matches, and every host whose name matches; as in Ansible,
 * host names are tried only when no group matched or the term is a wildcard. A string is the problem.
 */
function matchTerm(inventory: Inventory, name: string): Set<string> | string {
  const wildcard = isGlob(name);
  const regex = wildcard ? globToRegExp(name) : undefined;
  if (wildcard && !regex) return `pattern '${name}' is not a valid wildcard`;
  const matches = (candidate: string) => (regex ? regex.test(candidate) : candidate === name);
  const groups = new Set(inventory.groups.filter((g) => matches(g.name)).map((g) => g.name));
  const hosts = new Set<string>();
  for (const host of inventory.hosts) {
    if (host.groups.some((g) => groups.has(g))) hosts.add(host.name);
    if ((groups.size === 0 || wildcard) && matches(host.name)) hosts.add(host.name);
  }
  // An empty group is a match (it exists); a name that is nothing at all is a mistake worth stopping for.
  if (groups.size === 0 && hosts.size === 0)
    return `pattern '${name}' matches no host or group in ${inventory.file}`;
  return hosts;
}
