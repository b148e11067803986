/**
 * The playbook as the user writes it, generated from schemas/playbook.schema.json by
 * `npm run schema:types`: do not edit. test/unit/config/schema-types.test.ts fails when the two
 * disagree. The resolved model (units parsed, policies merged) is in model.ts.
 */

/**
 * A list of plays. Each play names the hypervisors it runs on (an inventory host pattern), a reclaim policy, and the guests whose disk images to shrink.
 *
 * @minItems 1
 */
export type PlaybookFile = [Play, ...Play[]];
/**
 * A disk image: its absolute path on the hypervisor, written directly or as `{ path: ... }`.
 */
export type Disk =
  | string
  | {
      /**
       * Absolute path of the image on the hypervisor.
       */
      path: string;
    };

/**
 * One set of guests to reclaim on the hypervisors matched by `hosts`, under one policy.
 */
export interface Play {
  /**
   * What this play does, shown in the plan and the report.
   */
  name: string;
  /**
   * Inventory host pattern of the hypervisors to run on, as in Ansible: a host or group name, `all`, globs such as `kvm0*`, and `a:b`, `a:&b`, `a:!b` combinations.
   */
  hosts: string;
  /**
   * Run the hypervisor commands through sudo (`sudo -n`, or `sudo -S` with the password from RECLAIM_BECOME_PASSWORD). A host is also reached this way when its inventory sets `ansible_become`.
   */
  become?: boolean;
  /**
   * Work on the play's hosts in batches of this many (or this share, such as `25%`), one batch after another, as Ansible's `serial`. Default: all hosts at once (up to --forks).
   */
  serial?: number | string;
  /**
   * Stop the play (no further batches) once more than this share of its hosts have failed or were unreachable, as Ansible's `max_fail_percentage`. Default: never stop early.
   */
  max_fail_percentage?: number;
  policy?: Policy;
  vm?: Vm;
  /**
   * The virtual machines whose disk images this play reclaims: a list naming each guest, or `{ discover: libvirt }` to take every libvirt domain on each host (optionally only those matching `include` and not `exclude`), their file disks read from the domain definitions.
   */
  guests?:
    | [Guest, ...Guest[]]
    | {
        /**
         * Where to find the guests: `libvirt` lists the domains with `virsh list --all` on each host of the play.
         */
        discover: "libvirt";
        /**
         * Domain name patterns to take (shell wildcards: `*`, `?`, `[a-z]`); default: every domain.
         *
         * @minItems 1
         */
        include?: [string, ...string[]];
        /**
         * Domain name patterns to leave out, even when included.
         */
        exclude?: string[];
        /**
         * The guest's operating system, which decides how free space is trimmed or zero-filled.
         */
        os?: "linux" | "windows";
        /**
         * How reclaim gets inside the guest to trim or zero-fill it: ssh, with its `ssh:` settings; agent, through the QEMU guest agent with `virsh qemu-agent-command` on the hypervisor (guest-exec), for guests without a network — the guest must be a libvirt domain with a guest agent channel.
         */
        access?: "ssh" | "agent";
        vm?: Vm;
      };
}
/**
 * When a disk is worth reclaiming and how. Every key is optional and falls back to the default shown; a guest may override any key.
 */
export interface Policy {
  /**
   * Skip a disk that would give back less than this.
   */
  min_reclaimable?: number | string;
  /**
   * Skip a disk that would give back less than this share of what it allocates now.
   */
  min_ratio?: number | string;
  /**
   * How free space inside the guest is made visible to the image before it is rewritten.
   */
  zero?: "auto" | "trim" | "fill" | "none";
  /**
   * Free space left in the guest filesystem while zero-filling it.
   */
  fill_reserve?: number | string;
  /**
   * Whether a running guest may be shut down so its image can be rewritten.
   */
  shutdown?: "graceful" | "never";
  /**
   * How long to wait for a graceful shutdown before giving up on the guest.
   */
  shutdown_timeout?: number | string;
  convert?: Convert;
  /**
   * How many disks of one hypervisor are rewritten at the same time (at most 4: each holds its lock's SSH channel and runs its steps on another). Each rewrite reads and writes a whole image, so one at a time is kind to shared storage.
   */
  max_parallel_per_host?: number;
}
/**
 * How the image is rewritten once its free space is zeroed.
 */
export interface Convert {
  /**
   * Image format to write.
   */
  format?: "qcow2";
  /**
   * Compress the rewritten image (smaller, slower to write and to read).
   */
  compress?: boolean;
  /**
   * Keep the original image next to the new one after a verified rewrite.
   */
  keep_backup?: boolean;
}
/**
 * How a running guest is shut down for its rewrite and started again afterwards (used when the policy's `shutdown` is `graceful`). A guest's `vm` keys override the play's, key by key.
 */
export interface Vm {
  /**
   * libvirt: `virsh` on the hypervisor (domain state, ACPI `shutdown`, `start` again if it was running). guest: power off from inside the guest over SSH, wait on the hypervisor until QEMU releases the image's lock, then run `start_command`. auto: libvirt when the hypervisor's libvirt knows the domain, else guest.
   */
  manager?: "auto" | "libvirt" | "guest";
  /**
   * The connection `virsh -c` uses on the hypervisor.
   */
  libvirt_uri?: string;
  /**
   * For the guest manager: the command (a list of arguments, run without a shell on the hypervisor, through sudo when the play has `become`) that starts the guest again. `{guest}` in an argument is replaced by the guest's name. Without it, a guest powered off from inside stays off.
   *
   * @minItems 1
   */
  start_command?: [string, ...string[]];
}
/**
 * A virtual machine and its disk images. Any policy key given here overrides the play's policy for this guest; `convert` is merged key by key, so keys left out keep the play's value.
 */
export interface Guest {
  /**
   * The libvirt domain name of the guest.
   */
  name: string;
  /**
   * The inventory host the guest lives on. Without it, the guest is looked for on every host of the play.
   */
  host?: string;
  /**
   * The guest's disk images on the hypervisor.
   *
   * @minItems 1
   */
  disks: [Disk, ...Disk[]];
  /**
   * The guest's operating system, which decides how free space is trimmed or zero-filled.
   */
  os?: "linux" | "windows";
  ssh?: Ssh;
  /**
   * How reclaim gets inside the guest to trim or zero-fill it: ssh, with its `ssh:` settings; agent, through the QEMU guest agent with `virsh qemu-agent-command` on the hypervisor (guest-exec), for guests without a network — the guest must be a libvirt domain with a guest agent channel.
   */
  access?: "ssh" | "agent";
  vm?: Vm;
  /**
   * Overrides policy.min_reclaimable for this guest.
   */
  min_reclaimable?: number | string;
  /**
   * Overrides policy.min_ratio for this guest.
   */
  min_ratio?: number | string;
  /**
   * Overrides policy.zero for this guest.
   */
  zero?: "auto" | "trim" | "fill" | "none";
  /**
   * Overrides policy.fill_reserve for this guest.
   */
  fill_reserve?: number | string;
  /**
   * Overrides policy.shutdown for this guest.
   */
  shutdown?: "graceful" | "never";
  /**
   * Overrides policy.shutdown_timeout for this guest.
   */
  shutdown_timeout?: number | string;
  convert?: Convert;
}
/**
 * How to reach the guest itself over SSH, to trim or zero-fill its free space while it runs.
 */
export interface Ssh {
  /**
   * Address or name of the guest, as seen from its hypervisor (the guest is reached through the hypervisor unless `jump` says otherwise).
   */
  host: string;
  /**
   * Login user; SSH's own default when left out.
   */
  user?: string;
  /**
   * SSH port.
   */
  port?: number;
  /**
   * How to reach the guest: left out, through its hypervisor's SSH connection (a guest's address is usually routable only from its host); `none`, directly from the machine running reclaim; otherwise jump hosts as OpenSSH's ProxyJump writes them (`[user@]host[:port]`, comma-separated).
   */
  jump?: string;
}
