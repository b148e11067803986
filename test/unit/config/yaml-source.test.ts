import { describe, expect, it } from "vitest";
import { parseYaml } from "../../../src/config/yaml-source.js";

describe("reading hostile YAML", () => {
  it("refuses flow nesting deep enough to exhaust the parser's stack, with a position", () => {
    const text = `a: 1\nb: ${"[".repeat(30_000)}${"]".repeat(30_000)}\n`;
    const src = parseYaml("deep.yml", text);
    expect(src.value).toBeNull();
    expect(src.diagnostics).toEqual([
      // The mapping `b:` is in counts as a level too: the 256th bracket is the 257th level.
      { file: "deep.yml", line: 2, column: 259, message: "nested more than 256 levels deep" },
    ]);
  });

  it("does not count brackets inside quotes or comments", () => {
    const text = `a: "${"[".repeat(300)}"\n# ${"{".repeat(300)}\nb: [1, [2]]\n`;
    const src = parseYaml("ok.yml", text);
    expect(src.diagnostics).toEqual([]);
    expect(src.value).toEqual({ a: "[".repeat(300), b: [1, [2]] });
  });

  it("refuses a file larger than any configuration needs", () => {
    const src = parseYaml("big.yml", `a: "${"x".repeat(17 * 1024 * 1024)}"\n`);
    expect(src.diagnostics[0]?.message).toMatch(/file too large/);
  });

  it("keeps alias expansion bounded (billion laughs)", () => {
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 0; i < 8; i++) {
      const prev = String.fromCharCode(97 + i);
      const next = String.fromCharCode(98 + i);
      lines.push(`${next}: &${next} [${Array(9).fill(`*${prev}`).join(",")}]`);
    }
    const src = parseYaml("bomb.yml", `${lines.join("\n")}\n`);
    expect(src.diagnostics.length).toBeGreaterThan(0);
  });
});

describe("counting nesting", () => {
  it("is not fooled by an apostrophe in a plain scalar", () => {
    const text = `name: the VM's disk\nb: ${"[".repeat(30_000)}${"]".repeat(30_000)}\n`;
    expect(parseYaml("x.yml", text).diagnostics[0]?.message).toBe("nested more than 256 levels deep");
  });
});
