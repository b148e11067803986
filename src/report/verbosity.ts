/**
 * How much a run of `plan` or `apply` says (`--quiet`, `--verbose`), and so which renderer shows
 * its progress. Warnings and errors go to stderr at every level.
 */

/**
 * quiet: no plan, no progress, only the recap's summary (the RECAP block and its last line).
 * normal: the plan, progress (listr2 at a terminal, throttled plain lines otherwise), the recap.
 * verbose: the plan, every event as a plain line (progress unthrottled, each step described), the recap.
 */
export type Verbosity = "quiet" | "normal" | "verbose";

export type RendererKind = "silent" | "plain" | "listr";

/**
 * The renderer for a run. JSON output and --quiet show no progress; --verbose shows every event
 * as a plain line, even at a terminal (listr2 redraws, it cannot keep every line).
 */
export function rendererKindFor(options: {
  json: boolean;
  interactive: boolean;
  verbosity: Verbosity;
}): RendererKind {
  if (options.json || options.verbosity === "quiet") return "silent";
  if (options.verbosity === "verbose" || !options.interactive) return "plain";
  return "listr";
}
