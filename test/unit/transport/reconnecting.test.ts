import { describe, expect, it } from "vitest";
import { ConnectionLostError } from "../../../src/errors.js";
import { reconnecting } from "../../../src/transport/reconnecting.js";
import type { CommandResult, CommandSpec, Transport } from "../../../src/transport/transport.js";

/** A connection that answers until it is cut, then fails like the SSH transport does. */
function connection(name: string) {
  let cut = false;
  const ran: string[] = [];
  const transport: Transport = {
    host: "kvm01",
    async run(spec: CommandSpec): Promise<CommandResult> {
      if (cut) throw new ConnectionLostError("connection to kvm01 lost", true);
      ran.push(spec.argv.join(" "));
      return {
        argv: spec.argv,
        exitCode: 0,
        signal: null,
        stdout: name,
        stderr: "",
        durationMs: 1,
        timedOut: false,
      };
    },
    close: async () => {},
  };
  return { transport, ran, cut: () => (cut = true) };
}

const noSleep = async () => {};

describe("a transport that reconnects", () => {
  it("sends the next command over a new connection once the old one was lost", async () => {
    const first = connection("first");
    const second = connection("second");
    const t = reconnecting(first.transport, async () => second.transport, { sleep: noSleep });
    expect((await t.run({ argv: ["true"] })).stdout).toBe("first");
    first.cut();
    expect((await t.run({ argv: ["echo", "again"] })).stdout).toBe("second");
    expect(second.ran).toEqual(["echo again"]);
  });

  it("lets a command that was cut in flight fail: only its caller knows whether to send it again", async () => {
    const first = connection("first");
    const t = reconnecting(
      {
        ...first.transport,
        run: async () => {
          first.cut();
          throw new ConnectionLostError("the command ended without an exit status (connection lost?)");
        },
      },
      async () => connection("second").transport,
      { sleep: noSleep },
    );
    await expect(t.run({ argv: ["qemu-img", "convert"] })).rejects.toThrow(/without an exit status/);
    expect((await t.run({ argv: ["true"] })).stdout).toBe("second");
  });

  it("tries a bounded number of times, then fails at once for every later command", async () => {
    const first = connection("first");
    let attempts = 0;
    const t = reconnecting(
      first.transport,
      async () => {
        attempts += 1;
        throw new Error("connect ECONNREFUSED");
      },
      { sleep: noSleep, delaysMs: [0, 10, 20] },
    );
    first.cut();
    await expect(t.run({ argv: ["true"] })).rejects.toThrow(
      /3 attempts to reconnect failed: connect ECONNREFUSED/,
    );
    await expect(t.run({ argv: ["true"] })).rejects.toThrow(/attempts to reconnect failed/);
    expect(attempts).toBe(3);
  });

  it("opens one new connection for many commands waiting at once", async () => {
    const first = connection("first");
    let opened = 0;
    const t = reconnecting(
      first.transport,
      async () => {
        opened += 1;
        return connection(`new ${opened}`).transport;
      },
      { sleep: noSleep },
    );
    first.cut();
    const results = await Promise.all([1, 2, 3, 4].map(() => t.run({ argv: ["true"] })));
    expect(results.map((r) => r.stdout)).toEqual(["new 1", "new 1", "new 1", "new 1"]);
    expect(opened).toBe(1);
  });
});
