/** `become`: run every command through `sudo -n`, which fails instead of prompting. */
import type { Transport } from "./transport.js";

export function withBecome(inner: Transport): Transport {
  return {
    host: inner.host,
    run: (spec) => inner.run({ ...spec, argv: ["sudo", "-n", "--", ...spec.argv] }),
    close: () => inner.close(),
  };
}
