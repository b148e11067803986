/**
 * The initramfs one boot of the guest gets: the cached base (which holds no key) with a small
 * newc ("070701") cpio archive appended that holds root's authorized keys. Linux unpacks
 * concatenated archives in order, later files winning.
 */
import { appendFileSync, copyFileSync } from "node:fs";

export interface CpioEntry {
  /** Path without a leading slash, e.g. "etc/reclaim/authorized_keys". */
  name: string;
  /** "dir" or "file". */
  type: "dir" | "file";
  /** Permission bits, e.g. 0o600. */
  mode: number;
  data?: string | Buffer;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

function record(ino: number, name: string, mode: number, data: Buffer, nlink: number): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, "utf8");
  const header = Buffer.from(
    [
      "070701",
      hex8(ino),
      hex8(mode),
      hex8(0), // uid
      hex8(0), // gid
      hex8(nlink),
      hex8(0), // mtime
      hex8(data.length),
      hex8(0), // devmajor
      hex8(0), // devminor
      hex8(0), // rdevmajor
      hex8(0), // rdevminor
      hex8(nameBytes.length),
      hex8(0), // check
    ].join(""),
    "ascii",
  );
  return Buffer.concat([header, nameBytes, pad4(header.length + nameBytes.length), data, pad4(data.length)]);
}

/** The archive, owned by root, ending with the TRAILER!!! record and padded to 512 bytes. */
export function newcArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 0x5eed00;
  for (const e of entries) {
    if (e.name.startsWith("/") || e.name.split("/").includes("..")) {
      throw new Error(`cpio: bad entry name ${e.name}`);
    }
    const data = e.type === "file" ? Buffer.from(e.data ?? "") : Buffer.alloc(0);
    const mode = (e.type === "dir" ? S_IFDIR : S_IFREG) | (e.mode & 0o7777);
    parts.push(record(++ino, e.name, mode, data, e.type === "dir" ? 2 : 1));
  }
  parts.push(record(0, "TRAILER!!!", 0, Buffer.alloc(0), 1));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

/**
 * Writes the per-boot initramfs to `path`: a copy of the cached base with an archive appended that
 * holds root's authorized keys. The cache never holds a key.
 */
export function writeBootInitrd(base: string, path: string, keys: readonly string[]): void {
  copyFileSync(base, path);
  appendFileSync(
    path,
    newcArchive([
      { name: "etc", type: "dir", mode: 0o755 },
      { name: "etc/reclaim", type: "dir", mode: 0o755 },
      {
        name: "etc/reclaim/authorized_keys",
        type: "file",
        mode: 0o600,
        data: keys.map((k) => `${k.trim()}\n`).join(""),
      },
    ]),
  );
}
