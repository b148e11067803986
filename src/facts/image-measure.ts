/**
 * `qemu-img measure`: how large the rewritten image would be. It counts allocated clusters, so
 * zeros the guest wrote as data are counted too: the estimate is an upper bound of the result.
 */

import { type CommandResult, describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

export interface ImageMeasure {
  /** Bytes the new image needs: the estimated size after the rewrite. */
  required: number;
  fullyAllocated: number;
  bitmaps: number;
}

export const imageMeasure: Fact<{ path: string; format: string; options: readonly string[] }, ImageMeasure> =
  {
    name: "image measure",
    // -U: a read-only fact, safe on an image in use.
    argv: ({ path, format, options }) => [
      "qemu-img",
      "measure",
      "-U",
      "--output=json",
      "-f",
      format,
      "-O",
      "qcow2",
      ...(options.length ? ["-o", options.join(",")] : []),
      path,
    ],
    parse: parseImageMeasure,
  };

export function parseImageMeasure(result: CommandResult): ImageMeasure {
  if (result.exitCode !== 0) throw new Error(describeFailure(result));
  const raw = JSON.parse(result.stdout) as { required: number; "fully-allocated": number; bitmaps?: number };
  return { required: raw.required, fullyAllocated: raw["fully-allocated"], bitmaps: raw.bitmaps ?? 0 };
}
