/** Real qcow2 images for integration tests, made with the real qemu-img and qemu-io. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const MiB = 1024 * 1024;

export function tempDir(prefix = "reclaim-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function qemuImg(...args: string[]): string {
  return execFileSync("qemu-img", args, { encoding: "utf8" });
}

/**
 * A qcow2 that allocates `writtenMiB` in its file of which `freedMiB` are free inside the image.
 * `pattern: "random"` writes incompressible, distinct data (a slower conversion, for kill tests).
 */
export function bloatedImage(
  path: string,
  opts: { virtualMiB: number; writtenMiB: number; freedMiB: number; options?: string },
): void {
  execFileSync("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    ...(opts.options ? ["-o", opts.options] : []),
    path,
    `${opts.virtualMiB}M`,
  ]);
  execFileSync("qemu-io", ["-f", "qcow2", "-c", `write -P 0x5a 0 ${opts.writtenMiB}M`, path], {
    stdio: "ignore",
  });
  if (opts.freedMiB > 0) {
    execFileSync(
      "qemu-io",
      [
        "--image-opts",
        "-c",
        `discard 0 ${opts.freedMiB}M`,
        `driver=qcow2,file.driver=file,file.filename=${path},pass-discard-request=off`,
      ],
      { stdio: "ignore" },
    );
  }
}

/** Random content through qemu-io's own writes is slow; a raw file of random bytes converted once is fast. */
export function randomImage(path: string, dataMiB: number, virtualMiB: number): void {
  const raw = `${path}.raw`;
  execFileSync("dd", ["if=/dev/urandom", `of=${raw}`, "bs=1M", `count=${dataMiB}`, "status=none"]);
  execFileSync("truncate", ["-s", `${virtualMiB}M`, raw]);
  execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, path]);
  rmSync(raw);
  // Now free most of it inside the image while the file keeps it allocated.
  execFileSync(
    "qemu-io",
    [
      "--image-opts",
      "-c",
      `discard 0 ${Math.floor(dataMiB / 4)}M`,
      `driver=qcow2,file.driver=file,file.filename=${path},pass-discard-request=off`,
    ],
    { stdio: "ignore" },
  );
}

export function allocated(path: string): number {
  return statSync(path).blocks * 512;
}

export function identical(a: string, b: string): boolean {
  try {
    execFileSync("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", a, b], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function copySparse(from: string, to: string): void {
  execFileSync("cp", ["--sparse=always", from, to]);
}

export function writeLocalInventory(dir: string): string {
  const file = join(dir, "inventory.yml");
  writeFileSync(file, "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n");
  return file;
}

export function writePlaybook(
  dir: string,
  disks: readonly string[],
  policy = "min_reclaimable: 16MiB\n    min_ratio: 10%\n    zero: none",
): string {
  const file = join(dir, "playbook.yml");
  writeFileSync(
    file,
    `- name: test play\n  hosts: localhost\n  policy:\n    ${policy}\n  guests:\n    - name: vm\n      disks: [${disks.map((d) => JSON.stringify(d)).join(", ")}]\n`,
  );
  return file;
}
