/** How reclaim reaches a host, read from its resolved variables the way Ansible reads them. */
import type { Connection } from "./model.js";
import { toPort } from "./vars.js";

const DEFAULT_SSH_PORT = 22;

/**
 * `ansible_connection: local` runs on this machine; so does a host named `localhost` that does not
 * say otherwise (Ansible's implicit localhost). Every other host is reached over SSH at
 * ansible_host (default: its inventory name) and ansible_port (default: 22).
 */
export function connectionOf(name: string, vars: Readonly<Record<string, unknown>>): Connection {
  const kind = vars.ansible_connection;
  if (kind === "local" || ((kind === undefined || kind === null) && name === "localhost"))
    return { kind: "local" };
  const address =
    typeof vars.ansible_host === "string" && vars.ansible_host !== "" ? vars.ansible_host : name;
  const ssh: Extract<Connection, { kind: "ssh" }> = {
    kind: "ssh",
    address,
    port: toPort(vars.ansible_port) ?? DEFAULT_SSH_PORT,
  };
  if (typeof vars.ansible_user === "string" && vars.ansible_user !== "") ssh.user = vars.ansible_user;
  const key = vars.ansible_ssh_private_key_file;
  if (typeof key === "string" && key !== "") ssh.privateKeyFile = key;
  return ssh;
}
