/**
 * Makes a qcow2 image that wastes space the way real ones do: data written, then freed inside the
 * image (discarded clusters) while the image file keeps them allocated on the host.
 */
import { describeFailure, type Transport } from "../transport/transport.js";

const MiB = 1024 * 1024;

export interface BloatedImageSpec {
  path: string;
  virtualBytes: number;
  writtenBytes: number;
  /** Part of what was written that the "guest" has since freed. */
  freedBytes: number;
}

export async function createBloatedImage(transport: Transport, spec: BloatedImageSpec): Promise<void> {
  const must = async (argv: string[]) => {
    const r = await transport.run({ argv, timeoutMs: 120_000 });
    if (r.exitCode !== 0) throw new Error(describeFailure(r));
  };
  await must(["qemu-img", "create", "-q", "-f", "qcow2", spec.path, String(spec.virtualBytes)]);
  await must(["qemu-io", "-f", "qcow2", "-c", `write -P 0x5a 0 ${spec.writtenBytes}`, spec.path]);
  // pass-discard-request=off: the clusters become free inside the image but stay allocated in the
  // file, as with a guest whose disk has discard='ignore' (QEMU's default).
  await must([
    "qemu-io",
    "--image-opts",
    "-c",
    `discard ${16 * MiB} ${spec.freedBytes}`,
    `driver=qcow2,file.driver=file,file.filename=${escapeOptionValue(spec.path)},pass-discard-request=off`,
  ]);
}

/** QEMU's option syntax: a comma inside a value is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replace(/,/g, ",,");
}
