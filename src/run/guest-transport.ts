/**
 * Reaching a guest over SSH, to free blocks inside it while it runs. A guest's address is usually
 * routable only from its hypervisor, so by default the connection goes through the hypervisor's
 * own connection (SSH direct-tcpip, no second login to the hypervisor); `jump: none` connects
 * directly, and any other `jump` is an OpenSSH ProxyJump list.
 */
import type { Guest } from "../config/model.js";
import { parseJumps, resolveSshSettings } from "../transport/ssh/settings.js";
import type { Transport } from "../transport/transport.js";
import { connectOptionsOf, type Opened, type SshContext } from "./transports.js";

export async function openGuestTransport(
  guest: Guest,
  hypervisor: Transport,
  ssh: SshContext,
): Promise<Opened> {
  if (!guest.ssh) return { unreachable: `guest ${guest.name} has no ssh: settings` };
  const { host, port, user, jump } = guest.ssh;
  const settings = resolveSshSettings(
    { alias: guest.name, address: host, ...(port ? { port } : {}), ...(user ? { user } : {}) },
    ssh.config,
    ssh.overrides,
  );
  const explicitJumps = jump !== undefined && jump.toLowerCase() !== "none";
  settings.jumps = explicitJumps ? parseJumps(jump, ssh.config) : [];
  // Through the hypervisor unless told otherwise; a local hypervisor is this machine already.
  const via = jump === undefined && hypervisor.tunnel ? hypervisor.tunnel.bind(hypervisor) : undefined;
  const { connectChain, SshConnectError } = await import("../transport/ssh/connect.js");
  const { createSshTransport } = await import("../transport/ssh/ssh-transport.js");
  try {
    const chain = await connectChain(settings, { ...connectOptionsOf(ssh), ...(via ? { via } : {}) });
    return { transport: createSshTransport(guest.name, chain) };
  } catch (error) {
    if (error instanceof SshConnectError) return { unreachable: `guest ${guest.name}: ${error.message}` };
    throw error;
  }
}
