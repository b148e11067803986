/**
 * `become`: every command through sudo. Without a password, `sudo -n` fails instead of prompting;
 * with one (from the environment, never from a file), `sudo -S` reads it from the first line of
 * standard input, which is never echoed or logged, and the rest of the input goes to the command.
 */
import type { Transport } from "./transport.js";

export function withBecome(inner: Transport, password?: string): Transport {
  return {
    host: inner.host,
    run: (spec) =>
      password === undefined
        ? inner.run({ ...spec, argv: ["sudo", "-n", "--", ...spec.argv] })
        : inner.run({
            ...spec,
            argv: ["sudo", "-S", "-p", "", "--", ...spec.argv],
            stdin: `${password}\n${spec.stdin ?? ""}`,
          }),
    ...(inner.tunnel ? { tunnel: inner.tunnel.bind(inner) } : {}),
    close: () => inner.close(),
  };
}
