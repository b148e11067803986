/**
 * Why a conversion failed, said with the numbers an operator acts on. qemu-img only says
 * "No space left on device"; the operator needs to know how full the host filesystem is and how
 * much the new image needed. Pure: the caller reads the free space (right after the failure,
 * before the temporary image is removed) and passes it in.
 */
import { formatBytes } from "../config/units.js";

/** The host filesystem holding the image. `sizeBytes` is its total size, when known. */
export interface HostSpace {
  availableBytes: number;
  sizeBytes?: number;
}

export interface ConvertFailure {
  /** The standard error of `qemu-img convert`. */
  stderr: string;
  /** The filesystem holding the image, read after the failure; absent when it could not be read. */
  space?: HostSpace;
  /** What the plan estimated the new image to take (qemu-img measure). */
  estimatedBytes?: number;
}

const CAUSES = [
  { pattern: /No space left on device/i, what: "the host filesystem filled up during the conversion" },
  { pattern: /Disk quota exceeded/i, what: "the disk quota ran out during the conversion" },
] as const;

/**
 * One line for a conversion that ran out of space, e.g. "the host filesystem filled up during the
 * conversion: 3.1 MiB free of 96 MiB, the new image needed about 40 MiB (qemu-img: error while
 * writing at byte 102760448: No space left on device)". Returns undefined when stderr does not say
 * that space ran out: the caller then relays qemu-img's own words. It does not say what became of
 * the original; the step's caller adds that.
 */
export function convertFailureMessage(failure: ConvertFailure): string | undefined {
  const lines = failure.stderr
    .split("\n")
    .map((line) => line.replace(/\s+/g, " ").trim())
    .filter((line) => line !== "");
  for (const cause of CAUSES) {
    const line = lines.find((l) => cause.pattern.test(l));
    if (line === undefined) continue;
    const numbers = [spaceText(failure.space), neededText(failure.estimatedBytes)].filter(
      (part): part is string => part !== undefined,
    );
    return `${cause.what}${numbers.length ? `: ${numbers.join(", ")}` : ""} (${qemuImgWords(line)})`;
  }
  return undefined;
}

function spaceText(space: HostSpace | undefined): string {
  if (!space) return "its free space could not be read";
  const free = formatBytes(Math.max(0, space.availableBytes));
  return space.sizeBytes === undefined ? `${free} free` : `${free} free of ${formatBytes(space.sizeBytes)}`;
}

function neededText(estimatedBytes: number | undefined): string | undefined {
  return estimatedBytes === undefined
    ? undefined
    : `the new image needed about ${formatBytes(estimatedBytes)}`;
}

/** qemu-img's line, named as its own, whether or not it already starts with "qemu-img:". */
function qemuImgWords(line: string): string {
  return line.startsWith("qemu-img:") ? line : `qemu-img: ${line}`;
}
