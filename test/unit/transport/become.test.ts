import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { withBecome } from "../../../src/transport/become.js";
import type { CommandSpec, Transport } from "../../../src/transport/transport.js";

/** What withBecome hands the transport beneath it, for one command. */
async function becomeSpec(
  password: string | undefined,
  argv: string[],
  stdin?: string,
): Promise<CommandSpec> {
  let seen: CommandSpec | undefined;
  const inner: Transport = {
    host: "kvm",
    run: async (spec) => {
      seen = spec;
      return {
        argv: spec.argv,
        exitCode: 0,
        signal: null,
        stdout: "",
        stderr: "",
        durationMs: 0,
        timedOut: false,
      };
    },
    close: async () => {},
  };
  await withBecome(inner, password).run({ argv, ...(stdin === undefined ? {} : { stdin }) });
  if (!seen) throw new Error("nothing was run");
  return seen;
}

/**
 * Runs what sudo would run (the argv after `--`) with the input sudo leaves: all of it where sudo
 * asks for no password (root, NOPASSWD), or all but the first line where it reads one.
 */
function asSudoWould(spec: CommandSpec, sudoReadsPassword: boolean): string {
  const command = spec.argv.slice(spec.argv.indexOf("--") + 1);
  const input = spec.stdin ?? "";
  return execFileSync(command[0] as string, command.slice(1), {
    input: sudoReadsPassword ? input.slice(input.indexOf("\n") + 1) : input,
    encoding: "utf8",
  });
}

describe("become with a password", () => {
  it.each([
    ["one line", "secret"],
    ["several lines", "line one\nline two\n$(touch /tmp/x)"],
  ])(
    "gives the command only its own input, with a password of %s that sudo does not read",
    async (_, password) => {
      const spec = await becomeSpec(password, ["cat"], '{"version":1}\n');
      expect(asSudoWould(spec, false)).toBe('{"version":1}\n');
    },
  );

  it("gives the command only its own input when sudo reads the password line", async () => {
    const spec = await becomeSpec("secret", ["cat"], '{"version":1}\n');
    expect(asSudoWould(spec, true)).toBe('{"version":1}\n');
  });

  it("sends the password only on standard input, never in the command line", async () => {
    const password = "pw $(touch /tmp/x) `id` ; '\" -rf";
    const spec = await becomeSpec(password, ["printf", "%s|", "a b", "$HOME"]);
    expect(spec.argv.join("\n")).not.toContain(password);
    expect(spec.stdin?.startsWith(`${password}\n`)).toBe(true);
    expect(asSudoWould(spec, false)).toBe("a b|$HOME|");
  });
});
