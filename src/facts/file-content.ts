/** The text of a small file, or its absence. */

import { describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

export type FileContent = { exists: false } | { exists: true; text: string };

export const fileContent: Fact<{ path: string }, FileContent> = {
  name: "file content",
  argv: ({ path }) => ["cat", "--", path],
  parse: (result) => {
    if (result.exitCode === 0) return { exists: true, text: result.stdout };
    if (/No such file or directory/.test(result.stderr)) return { exists: false };
    throw new Error(describeFailure(result));
  },
};
