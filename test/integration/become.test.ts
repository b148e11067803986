/**
 * `become` with a password, through the real sudo: where sudo does not ask for the password (root,
 * or a NOPASSWD rule, common on hypervisors), `sudo -S` leaves it in the command's input. The
 * command must still see only its own input: a journal written from stdin would otherwise begin
 * with the password, and a journal that does not parse is quoted in the plan.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { withBecome } from "../../src/transport/become.js";
import { createLocalTransport } from "../../src/transport/local.js";
import { deferCleanups } from "../helpers/cleanup.js";

const { defer, workspace } = deferCleanups();

const PASSWORD = "become-password-9f1c2e";

function passwordlessSudo(): boolean {
  try {
    execFileSync("sudo", ["-n", "true"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("become with a password sudo does not ask for", () => {
  it("gives the command only its own input", async () => {
    if (!passwordlessSudo())
      expect.fail("needs sudo that does not ask for a password here (root, or NOPASSWD)");
    const transport = withBecome(createLocalTransport(), PASSWORD);
    const result = await transport.run({ argv: ["cat"], stdin: '{"version":1}\nsecond line\n' });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('{"version":1}\nsecond line\n');
    expect(`${result.stdout}${result.stderr}`).not.toContain(PASSWORD);
  });

  it("runs a command that reads no input, with its arguments as given", async () => {
    if (!passwordlessSudo())
      expect.fail("needs sudo that does not ask for a password here (root, or NOPASSWD)");
    const transport = withBecome(createLocalTransport(), PASSWORD);
    const result = await transport.run({ argv: ["printf", "%s|", "a b", "$HOME", "'q'"] });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe("a b|$HOME|'q'|");
  });
});

describe("become with a password sudo asks for", () => {
  it("gives sudo the password and the command only its own input", async () => {
    // A stand-in for sudo where it asks: it reads the password line (as sudo -S does, one byte at a
    // time, leaving the rest), refuses a wrong one, then runs the command.
    const { dir } = workspace("reclaim-become-test-");
    writeFileSync(
      join(dir, "sudo"),
      [
        "#!/bin/sh",
        "IFS= read -r password",
        `[ "$password" = "${PASSWORD}" ] || { echo "Sorry, try again." >&2; exit 1; }`,
        'while [ "$1" != "--" ]; do shift; done; shift',
        'exec "$@"',
        "",
      ].join("\n"),
    );
    chmodSync(join(dir, "sudo"), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${dir}:${path}`;
    defer(() => {
      process.env.PATH = path;
    });
    const transport = withBecome(createLocalTransport(), PASSWORD);
    const result = await transport.run({ argv: ["cat"], stdin: '{"version":1}\nsecond line\n' });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('{"version":1}\nsecond line\n');
  });
});
