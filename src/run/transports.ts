/** One transport per inventory host for the whole run. */
import type { InventoryHost } from "../inventory/model.js";
import { withBecome } from "../transport/become.js";
import { createLocalTransport } from "../transport/local.js";
import type { Transport } from "../transport/transport.js";

export type Opened = { transport: Transport } | { unreachable: string };

export async function openTransport(host: InventoryHost): Promise<Opened> {
  switch (host.connection.kind) {
    case "local": {
      const local = createLocalTransport(host.name);
      return { transport: host.become && process.getuid?.() !== 0 ? withBecome(local) : local };
    }
    case "ssh":
      return {
        unreachable: "SSH connections are not supported by this version yet (only ansible_connection: local)",
      };
  }
}
