/**
 * How much of a file the user wrote reclaim is willing to read. Each bound is far above what a real
 * playbook, inventory or saved plan needs, and low enough that a hostile or broken file is refused
 * in seconds and a few hundred MiB at worst. The inventory has its own bounds on what multiplies
 * with hosts: inventory/host-range.ts and inventory/resolve.ts.
 */

/**
 * Largest playbook, inventory or saved plan read, in bytes. A 50,000-host inventory with four
 * variables a host is 4.4 MiB as INI and 5 to 7 MiB as YAML; 16 MiB leaves room for twice that.
 * Checked before reading, so a stray disk image given as a playbook costs nothing.
 */
export const MAX_SOURCE_BYTES = 16 * 2 ** 20;

/**
 * YAML tokens (values, indicators, spaces, line breaks, comments) parsed from one file. The yaml
 * package keeps 70 to 400 bytes of syntax tree per token, so bytes alone do not bound its memory. A
 * 50,000-host inventory with four variables a host is 1.9 million tokens in either style; at 3
 * million, the densest hostile input (`[[],[],…]`) was refused with the process at 712 MiB.
 */
export const MAX_YAML_TOKENS = 3_000_000;

/**
 * Nesting of YAML collections (block or flow) and of saved-plan JSON. The yaml package, the schema
 * validator and JSON.stringify recurse once per level and overflow the stack near 1,000 levels; a
 * playbook needs 6, an inventory with 100 levels of child groups (its own limit) about 210.
 */
export const MAX_NESTING = 256;

/**
 * Anchors and aliases in one YAML file. The yaml package finds each alias's anchor by scanning every
 * anchor and alias before it, so the work grows with the square of their number.
 */
export const MAX_ANCHORS_AND_ALIASES = 10_000;

/**
 * Nodes that aliases may add to a document once expanded: the "billion laughs" defence. Nine
 * aliases of nine aliases of nine values already make 9^3 = 729; a real file repeats a few blocks.
 */
export const MAX_ALIAS_EXPANSION = 100_000;
