/**
 * `reclaim demo`: the whole job on this machine, with nothing to set up. It builds a bloated image
 * in a temporary directory, shows the plan, applies it through the same code as `reclaim apply`,
 * proves the data is unchanged and that a second run changes nothing, then removes everything.
 * `--vm` does it on a real guest VM instead (vm-demo.ts).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyCommand, planCommand } from "../cli/commands/run.js";
import { type CliIo, print } from "../cli/io.js";
import { formatBytes } from "../config/units.js";
import { RunError } from "../errors.js";
import { createLocalTransport } from "../transport/local.js";
import { describeFailure } from "../transport/transport.js";
import { createBloatedImage } from "./bloated-image.js";
import { allocatedBytes, fileIdentity } from "./image-state.js";
import { vmDemo } from "./vm-demo.js";

const MiB = 1024 * 1024;

export interface DemoOptions {
  keep: boolean;
  /** On a real guest VM booted under QEMU, rather than on an image alone. */
  vm: boolean;
  signal?: AbortSignal;
}

export function demoCommand(options: DemoOptions, io: CliIo): Promise<number> {
  const { vm, ...rest } = options;
  return vm ? vmDemo(rest, io) : imageDemo(rest, io);
}

async function imageDemo(options: { keep: boolean; signal?: AbortSignal }, io: CliIo): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "reclaim-demo-"));
  const transport = createLocalTransport();
  const say = (text: string) => print(io.stdout, text);
  try {
    const image = join(dir, "demo-vm.qcow2");
    const reference = join(dir, "reference-copy.qcow2");
    await createBloatedImage(transport, {
      path: image,
      virtualBytes: 2048 * MiB,
      writtenBytes: 640 * MiB,
      freedBytes: 480 * MiB,
    });
    const cp = await transport.run({ argv: ["cp", "--sparse=always", "--", image, reference] });
    if (cp.exitCode !== 0) throw new RunError(describeFailure(cp));
    const before = await allocatedBytes(transport, image);
    await writeFile(
      join(dir, "inventory.yml"),
      "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
    );
    await writeFile(
      join(dir, "playbook.yml"),
      [
        "- name: Reclaim the demo VM's disk",
        "  hosts: localhost",
        "  policy:",
        "    min_reclaimable: 64MiB",
        "    min_ratio: 10%",
        "    zero: none",
        "  guests:",
        "    - name: demo-vm",
        `      disks: [${JSON.stringify(image)}]`,
        "",
      ].join("\n"),
    );
    const common = {
      ssh: {},
      inventory: join(dir, "inventory.yml"),
      playbooks: [join(dir, "playbook.yml")],
      forks: 1,
      json: false,
      ...(options.signal ? { signal: options.signal } : {}),
    };

    say(`reclaim demo, in ${dir}`);
    say(`\n== 1. A bloated image: ${image}`);
    say(
      `   2 GiB virtual, 640 MiB written, then 480 MiB of it freed inside the guest; the file still allocates ${formatBytes(before)} on the host.`,
    );
    say("\n== 2. The plan (reclaim plan: read-only)\n");
    const planned = await planCommand({ ...common, detailedExitcode: true }, io);
    if (planned !== 2)
      throw new RunError(`the demo expected changes to be pending (plan exit 2), got ${planned}`);

    say("\n== 3. Apply (reclaim apply --yes)\n");
    const applied = await applyCommand({ ...common, yes: true }, io);
    if (applied !== 0) return applied;
    const after = await allocatedBytes(transport, image);
    const compare = await transport.run({
      argv: ["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", reference, image],
    });
    if (compare.exitCode !== 0)
      throw new RunError(
        `the rewritten image differs from the copy made before: ${describeFailure(compare)}`,
      );
    say(
      `\n   ${formatBytes(before)} → ${formatBytes(after)} allocated; qemu-img compare with the copy made before: identical.`,
    );

    say("\n== 4. Apply again: nothing left to do\n");
    const inodeBefore = await fileIdentity(transport, image);
    const again = await applyCommand({ ...common, yes: true }, io);
    if (again !== 0 || (await fileIdentity(transport, image)) !== inodeBefore) {
      throw new RunError("the second run should have left the image untouched");
    }
    say(
      `\nDemo done: reclaimed ${formatBytes(before - after)}; the second run left the image untouched (same inode).`,
    );
    return 0;
  } finally {
    await transport.close();
    if (options.keep) say(`(kept ${dir})`);
    else await rm(dir, { recursive: true, force: true });
  }
}
