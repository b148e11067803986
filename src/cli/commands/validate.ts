/** `reclaim validate`: every problem in every file, positioned; nothing is contacted. */
import { refuseLargeSources } from "../../config/source-file.js";
import { loadWorkspace } from "../../run/workspace.js";
import { type CliIo, print } from "../io.js";

export async function validateCommand(
  options: { inventory?: string; playbooks: string[] },
  io: CliIo,
): Promise<number> {
  await refuseLargeSources([...(options.inventory ? [options.inventory] : []), ...options.playbooks]);
  const ws = await loadWorkspace(options.inventory, options.playbooks);
  const guests = ws.plays.reduce((n, p) => n + p.guests.length, 0);
  const discovering = ws.plays.filter((p) => p.discover).length;
  const discovered = discovering ? `, ${discovering} play(s) discovering guests in libvirt` : "";
  print(
    io.stdout,
    `valid: ${ws.plays.length} play(s), ${guests} guest(s)${discovered}, ${ws.inventory.hosts.length} inventory host(s)`,
  );
  return 0;
}
