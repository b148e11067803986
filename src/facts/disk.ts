/**
 * Everything the planner needs to know about one disk image on its host, read without changing
 * anything. The reads are independent, so they go out together (one round trip over SSH).
 */

import { qcow2CreateOptions } from "../image/create-options.js";
import { imagePaths } from "../image/paths.js";
import type { Transport } from "../transport/transport.js";
import { gather } from "./fact.js";
import { type FileContent, fileContent } from "./file-content.js";
import { type FileStatFact, fileStat } from "./file-stat.js";
import { type FsFree, fsFree } from "./fs-free.js";
import { type ImageInfo, imageInfoShared, imageProbe } from "./image-info.js";
import { type ImageMeasure, imageMeasure } from "./image-measure.js";

export interface DiskFacts {
  path: string;
  stat: FileStatFact;
  /** Set when a running process holds the image's lock. */
  inUse?: { message: string };
  info?: ImageInfo;
  measure?: ImageMeasure;
  free?: FsFree;
  temp: FileStatFact;
  /** The temporary image of a rewrite is locked: another process is converting this disk now. */
  tempInUse?: boolean;
  journal: FileContent;
  /** A fact that could not be read: the disk is left alone and this is said. */
  error?: string;
}

export async function gatherDiskFacts(transport: Transport, path: string): Promise<DiskFacts> {
  const paths = imagePaths(path);
  const [stat, temp, journal, free] = await Promise.all([
    gather(transport, fileStat, { path }),
    gather(transport, fileStat, { path: paths.temp }),
    gather(transport, fileContent, { path: paths.journal }),
    gather(transport, fsFree, { dir: paths.dir }).catch(() => undefined),
  ]);
  const facts: DiskFacts = { path, stat, temp, journal };
  if (free) facts.free = free;
  if (temp.exists && temp.type === "file") {
    const tempProbe = await gather(transport, imageProbe, { path: paths.temp }).catch(() => undefined);
    if (tempProbe?.inUse) facts.tempInUse = true;
  }
  if (!stat.exists || stat.type !== "file") return facts;
  try {
    const probe = await gather(transport, imageProbe, { path });
    if (probe.inUse) {
      facts.inUse = { message: probe.lockMessage };
      facts.info = await gather(transport, imageInfoShared, { path });
    } else {
      facts.info = probe.info;
    }
    if (facts.info.format === "qcow2" && !facts.info.encrypted) {
      facts.measure = await gather(transport, imageMeasure, {
        path,
        format: facts.info.format,
        options: qcow2CreateOptions(facts.info.options),
      });
    }
  } catch (error) {
    facts.error = (error as Error).message;
  }
  return facts;
}
