/** How reclaim reaches a host, read from its resolved variables the way Ansible reads them. */
import type { Connection } from "./model.js";
import { toPort } from "./vars.js";

/**
 * `ansible_connection: local` runs on this machine; so does a host named `localhost` that does not
 * say otherwise (Ansible's implicit localhost). Every other host is reached over SSH at
 * ansible_host (default: its inventory name); port, user and key come from ansible_port,
 * ansible_user and ansible_ssh_private_key_file when set, else from OpenSSH's client config.
 */
export function connectionOf(name: string, vars: Readonly<Record<string, unknown>>): Connection {
  const kind = vars.ansible_connection;
  if (kind === "local" || ((kind === undefined || kind === null) && name === "localhost"))
    return { kind: "local" };
  const address =
    typeof vars.ansible_host === "string" && vars.ansible_host !== "" ? vars.ansible_host : name;
  const ssh: Extract<Connection, { kind: "ssh" }> = { kind: "ssh", address };
  const port = toPort(vars.ansible_port);
  if (port !== undefined) ssh.port = port;
  if (typeof vars.ansible_user === "string" && vars.ansible_user !== "") ssh.user = vars.ansible_user;
  const key = vars.ansible_ssh_private_key_file;
  if (typeof key === "string" && key !== "") ssh.privateKeyFile = key;
  return ssh;
}
