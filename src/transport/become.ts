/**
 * `become`: every command through sudo. Without a password, `sudo -n` fails instead of prompting;
 * with one (from the environment, never from a file), `sudo -S` reads it from the first line of
 * standard input, which is never echoed or logged, and the rest of the input goes to the command.
 */
import { randomBytes } from "node:crypto";
import type { Transport } from "./transport.js";

/**
 * sudo reads the password only when it asks for one. Where it does not (a NOPASSWD rule, or root)
 * the password line would reach the command, and a journal written from standard input would begin
 * with it. So a marker line follows the password, and this reads up to the marker, whatever sudo
 * left before it (a password with a line break is several lines), before the command starts with
 * only its own input ($0 is the marker).
 */
const SKIP_TO_MARKER = 'while IFS= read -r line; do [ "$line" = "$0" ] && exec "$@"; done; exit 125';

export function withBecome(inner: Transport, password?: string): Transport {
  return {
    host: inner.host,
    ...(inner.streamsStdin ? { streamsStdin: true } : {}),
    run: (spec) => {
      if (password === undefined) return inner.run({ ...spec, argv: ["sudo", "-n", "--", ...spec.argv] });
      const marker = `reclaim-become-${randomBytes(8).toString("hex")}`;
      return inner.run({
        ...spec,
        argv: ["sudo", "-S", "-p", "", "--", "sh", "-c", SKIP_TO_MARKER, marker, ...spec.argv],
        stdin: `${password}\n${marker}\n${spec.stdin ?? ""}`,
      });
    },
    ...(inner.tunnel ? { tunnel: inner.tunnel.bind(inner) } : {}),
    close: () => inner.close(),
  };
}
