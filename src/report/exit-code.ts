/**
 * Exit codes, each with one meaning (documented in the README):
 * 0 success, 1 error that stopped the run, 2 a disk failed, 3 a host unreachable,
 * 4 configuration invalid, 5 bad command line, 6 cancelled at the prompt, 130 interrupted.
 * `plan --detailed-exitcode` follows Terraform: 0 nothing to do, 2 changes pending.
 */
import type { RunResult } from "../run/results.js";

export const EXIT = {
  ok: 0,
  error: 1,
  failed: 2,
  changesPending: 2,
  unreachable: 3,
  config: 4,
  usage: 5,
  cancelled: 6,
  interrupted: 130,
} as const;

export function exitCodeOf(result: RunResult): number {
  if (
    result.disks.some((d) => d.status === "failed") ||
    result.guests.some((g) => !g.ok) ||
    result.vms.some((v) => !v.ok)
  )
    return EXIT.failed;
  if (result.hosts.some((h) => h.unreachable)) return EXIT.unreachable;
  return EXIT.ok;
}
