/** reclaim's version, from package.json (two levels above both src/cli/ and dist/cli/). */
import { createRequire } from "node:module";

export const VERSION: string = (createRequire(import.meta.url)("../../package.json") as { version: string })
  .version;
