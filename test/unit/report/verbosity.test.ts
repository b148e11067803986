import { describe, expect, it } from "vitest";
import { rendererKindFor, type Verbosity } from "../../../src/report/verbosity.js";

describe("the renderer for a run", () => {
  it.each<[boolean, boolean, Verbosity, string]>([
    // json, at a terminal, verbosity → renderer
    [false, true, "normal", "listr"],
    [false, false, "normal", "plain"],
    [false, true, "verbose", "plain"],
    [false, false, "verbose", "plain"],
    [false, true, "quiet", "silent"],
    [false, false, "quiet", "silent"],
    [true, true, "normal", "silent"],
    [true, false, "verbose", "silent"],
  ])("json=%s, terminal=%s, %s: %s", (json, interactive, verbosity, kind) => {
    expect(rendererKindFor({ json, interactive, verbosity })).toBe(kind);
  });
});
