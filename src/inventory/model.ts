/** The resolved inventory: every host with its merged variables, every group with its members. */

export type Connection =
  | { kind: "local" }
  /** port, user and key only when the inventory sets them: OpenSSH's config fills the rest. */
  | { kind: "ssh"; address: string; port?: number; user?: string; privateKeyFile?: string };

export interface InventoryHost {
  name: string;
  connection: Connection;
  become: boolean;
  /** All variables after Ansible's precedence (all < parent group < child group < host). */
  vars: Record<string, unknown>;
  /** Every group the host belongs to, directly or through children, `all` included. */
  groups: string[];
}

export interface InventoryGroup {
  name: string;
  /** Hosts listed directly in the group. */
  hosts: string[];
  children: string[];
  vars: Record<string, unknown>;
}

export interface Inventory {
  file: string;
  /** In the order the file declares them. */
  hosts: InventoryHost[];
  groups: InventoryGroup[];
}
