/** Which programs this machine lacks, named by the Debian packages that bring them. */
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** A program and the Debian package that installs it. */
export interface HostTool {
  program: string;
  debianPackage: string;
}

/** The standard directories too: root's tools (mkfs.ext4, debugfs) live in sbin. */
const ALWAYS_SEARCHED = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/**
 * Where `program` is: the first executable file of that name in a directory of PATH or a standard
 * one (a user's PATH often lacks sbin, where mkfs.ext4 lives).
 */
export function locate(program: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? "").split(delimiter).filter(Boolean), ...ALWAYS_SEARCHED];
  for (const dir of dirs) {
    const path = join(dir, program);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** The packages (each once, in the order given) whose programs are missing. */
export function missingPackages(tools: readonly HostTool[], env: NodeJS.ProcessEnv = process.env): string[] {
  const missing = tools.filter((t) => locate(t.program, env) === undefined).map((t) => t.debianPackage);
  return [...new Set(missing)];
}
