/**
 * QEMU's command line for the small Linux guest (guest-artifacts.ts): software emulation (TCG),
 * one qcow2 data disk on virtio-blk, and QEMU's user network reachable only through a `hostfwd`
 * from 127.0.0.1:PORT to the guest's SSH server; `restrict=on` keeps the guest from reaching the
 * host or anything beyond it. Shared by `reclaim demo --vm` and the test suite's guest lab.
 */
import { escapeOptionValue } from "./bloated-image.js";

export const QEMU = "qemu-system-x86_64";

export interface GuestMachine {
  /** QEMU's -name, for `ps`. */
  name: string;
  kernel: string;
  /** This boot's initramfs (the cached base with the authorized keys appended). */
  initrd: string;
  memoryMiB: number;
  /** Attached as /dev/vda; the guest mounts it at /data. */
  dataImage: string;
  /** What QEMU does with the guest's discards: "unmap" passes them to the image. */
  discard: "unmap" | "ignore";
  /** Loopback port forwarded to the guest's port 22. */
  port: number;
  /** The serial console: QEMU's standard output, or a file that each start writes anew. */
  console: "stdio" | { file: string };
  /** Daemonize once the guest is started, with QEMU's PID in this file (removed when it exits). */
  pidFile?: string;
}

/** The arguments, without the program's name. */
export function guestQemuArgs(m: GuestMachine): string[] {
  return [
    "-name",
    m.name,
    "-machine",
    "q35",
    "-accel",
    "tcg",
    // RDRAND lets the guest's RNG initialise at once (dropbearkey would otherwise wait ~1 s).
    "-cpu",
    "qemu64,+rdrand",
    "-smp",
    "1",
    "-m",
    String(m.memoryMiB),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-chardev",
    m.console === "stdio"
      ? "stdio,id=con0,signal=off"
      : `file,id=con0,path=${escapeOptionValue(m.console.file)}`,
    "-serial",
    "chardev:con0",
    "-kernel",
    m.kernel,
    "-initrd",
    m.initrd,
    "-append",
    // panic=-1: a panic (init failed) reboots at once, and -no-reboot turns that into QEMU's exit.
    "console=ttyS0 quiet panic=-1",
    "-drive",
    `file=${escapeOptionValue(m.dataImage)},if=none,id=d0,format=qcow2,discard=${m.discard},detect-zeroes=off`,
    "-device",
    "virtio-blk-pci,drive=d0",
    "-netdev",
    `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${m.port}-:22`,
    "-device",
    "virtio-net-pci,netdev=n0",
    ...(m.pidFile ? ["-daemonize", "-pidfile", m.pidFile] : []),
  ];
}
