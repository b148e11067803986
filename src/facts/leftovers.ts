/**
 * The names of reclaim's own files left in a directory (temporary images and journals of rewrites
 * that were interrupted), listed once per directory instead of probed once per image.
 */
import { describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

export const leftoverNames: Fact<{ dir: string }, Set<string>> = {
  name: "leftover files",
  // -print0: a file name may hold any byte but NUL, newlines included.
  argv: ({ dir }) => ["find", dir, "-mindepth", "1", "-maxdepth", "1", "-name", ".*.reclaim-*", "-print0"],
  parse: (result) => {
    if (result.exitCode !== 0) throw new Error(describeFailure(result));
    return new Set(
      result.stdout
        .split("\0")
        .filter(Boolean)
        .map((p) => p.slice(p.lastIndexOf("/") + 1)),
    );
  },
};
