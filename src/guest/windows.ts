/**
 * Freeing blocks inside a Windows guest over OpenSSH. Every command is a PowerShell script sent as
 * -EncodedCommand (base64 of UTF-16LE): nothing of it passes through cmd.exe's or PowerShell's
 * quoting, and the command line holds only base64 characters.
 *
 * sdelete's argument is always a drive letter with its colon: a bare number names a *physical
 * disk*, and `sdelete -z 1` has wiped whole disks (sysinternals issues #77 and #815).
 */
import type { GuestFilesystem } from "./filesystems.js";

export interface WindowsVolume {
  /** "C:" */
  drive: string;
  fileSystem: string;
  sizeBytes: number;
  freeBytes: number;
}

/** "C", "c:" → "C:"; anything else (a digit above all) is refused. */
export function driveLetter(value: string): string {
  const m = /^([A-Za-z]):?$/.exec(value.trim());
  if (!m)
    throw new RangeError(
      `not a drive letter: ${JSON.stringify(value)} (sdelete reads a bare number as a physical disk)`,
    );
  return `${(m[1] as string).toUpperCase()}:`;
}

export function encodedPowerShell(script: string): string[] {
  return [
    "powershell",
    "-NoProfile",
    "-NonInteractive",
    "-EncodedCommand",
    Buffer.from(script, "utf16le").toString("base64"),
  ];
}

export const volumesArgv = encodedPowerShell(
  "Get-Volume | Where-Object { $_.DriveLetter -and $_.DriveType -eq 'Fixed' } | " +
    "Select-Object DriveLetter,FileSystemType,Size,SizeRemaining | ConvertTo-Json -Compress",
);

/** Get-Volume as JSON: an object for one volume, an array for several. */
export function parseVolumes(json: string): WindowsVolume[] {
  const raw = JSON.parse(json) as unknown;
  const list = (Array.isArray(raw) ? raw : [raw]) as {
    DriveLetter: string;
    FileSystemType: string | number;
    Size: number;
    SizeRemaining: number;
  }[];
  return list
    .filter((v) => typeof v.DriveLetter === "string" && v.DriveLetter !== "")
    .map((v) => ({
      drive: driveLetter(v.DriveLetter),
      fileSystem: String(v.FileSystemType),
      sizeBytes: v.Size,
      freeBytes: v.SizeRemaining,
    }));
}

/** NTFS and ReFS volumes as the planner sees any guest filesystem (mount = the drive, "C:"). */
export function volumesAsFilesystems(volumes: readonly WindowsVolume[]): GuestFilesystem[] {
  return volumes
    .filter((v) => /^(NTFS|ReFS)$/i.test(v.fileSystem))
    .map((v) => ({
      mount: v.drive,
      device: v.drive,
      type: v.fileSystem,
      sizeBytes: v.sizeBytes,
      usedBytes: v.sizeBytes - v.freeBytes,
      availableBytes: v.freeBytes,
      // Windows does not say whether its discards reach the image; retrim is tried, and refused
      // where the volume does not support it (then sdelete zeroes instead).
      discard: true,
    }));
}

/** Retrim through the storage stack; works only where the volume reports TRIM / thin provisioning. */
export function retrimArgv(drive: string): string[] {
  const letter = driveLetter(drive).slice(0, 1);
  return encodedPowerShell(
    `$ErrorActionPreference = 'Stop'; Optimize-Volume -DriveLetter ${letter} -ReTrim -Verbose`,
  );
}

/** Optimize-Volume's refusal when the volume cannot be trimmed: fall back to sdelete. */
export function retrimUnsupported(output: string): boolean {
  return /not supported by the hardware|0x89000020|operation requested is not supported/i.test(output);
}

/** Zero the free space (-z, never -c): always a drive letter with its colon. */
export function sdeleteArgv(drive: string): string[] {
  const volume = driveLetter(drive);
  return encodedPowerShell(
    `$ErrorActionPreference = 'Stop'; & sdelete64.exe -accepteula -nobanner -z ${volume}; exit $LASTEXITCODE`,
  );
}
