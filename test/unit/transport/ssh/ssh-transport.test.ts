import { EventEmitter } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SshChain } from "../../../../src/transport/ssh/connect.js";
import { createSshTransport } from "../../../../src/transport/ssh/ssh-transport.js";

/**
 * A stand-in for an ssh2 exec channel, with ssh2's event order: `exit` is emitted while ssh2
 * parses the server's reply, which for a fast command can be in the same read as the exec reply,
 * so before the transport listens; `close` then repeats the status (as ssh2 documents).
 */
class FakeChannel extends EventEmitter {
  readonly stderr = Object.assign(new EventEmitter(), { setEncoding: () => {} });
  readonly requests: string[] = [];
  outgoing = { id: 0, state: "open" };
  _client = { _protocol: { signal: (_id: number, name: string) => this.requests.push(`signal ${name}`) } };
  setEncoding(): void {}
  end(): void {
    // What our side sends once stdin is written; ssh2 then refuses channel.signal().
    this.outgoing.state = "eof";
  }
  /** As ssh2's: sends nothing unless our side is still open. */
  signal(name: string): void {
    if (this.outgoing.state === "open") this._client._protocol.signal(this.outgoing.id, name);
  }
  close(): void {
    this.requests.push("close");
  }
}

function fakeChain(onExec: (channel: FakeChannel) => void): { chain: SshChain; channels: FakeChannel[] } {
  const channels: FakeChannel[] = [];
  const client = Object.assign(new EventEmitter(), {
    exec(_command: string, callback: (error: Error | undefined, channel: FakeChannel) => void) {
      const channel = new FakeChannel();
      channels.push(channel);
      callback(undefined, channel);
      onExec(channel);
    },
  });
  return { chain: { client, close: () => {} } as unknown as SshChain, channels };
}

describe("the SSH transport's reading of a channel", () => {
  it("keeps the exit status that arrived before it listened, from the close event", async () => {
    const { chain } = fakeChain((channel) => {
      channel.emit("exit", 1);
      setImmediate(() => channel.emit("close", 1));
    });
    const result = await createSshTransport("h", chain).run({ argv: ["stat", "/nope"] });
    expect([result.exitCode, result.signal]).toEqual([1, null]);
  });

  it("names a signal once, as ssh2 already gives it with its SIG prefix", async () => {
    const { chain } = fakeChain((channel) =>
      setImmediate(() => {
        channel.emit("exit", null, "SIGTERM", false, "");
        channel.emit("close", null, "SIGTERM", false, "");
      }),
    );
    const result = await createSshTransport("h", chain).run({ argv: ["sleep", "9"] });
    expect([result.exitCode, result.signal]).toEqual([null, "SIGTERM"]);
  });

  it("still fails a command whose channel closed without any exit status", async () => {
    const { chain } = fakeChain((channel) => setImmediate(() => channel.emit("close")));
    await expect(createSshTransport("h", chain).run({ argv: ["true"] })).rejects.toThrow(
      /without an exit status/,
    );
  });

  it("sends the signal of an abort even though stdin has already been closed", async () => {
    const abort = new AbortController();
    const { chain, channels } = fakeChain(() => {});
    const running = createSshTransport("h", chain).run({ argv: ["sleep", "9"], signal: abort.signal });
    await new Promise((r) => setImmediate(r));
    abort.abort();
    const channel = channels[0] as FakeChannel;
    expect(channel.requests).toEqual(["signal TERM", "close"]);
    channel.emit("close", null, "SIGTERM");
    expect((await running).signal).toBe("SIGTERM");
  });
});

/** A server with a session limit: refuses a channel beyond `maxSessions`, runs each command `ms`. */
function limitedServer(maxSessions: number, ms: number): { chain: SshChain; peak: () => number } {
  let open = 0;
  let peak = 0;
  const client = Object.assign(new EventEmitter(), {
    exec(_command: string, callback: (error: Error | undefined, channel?: FakeChannel) => void) {
      setTimeout(() => {
        if (open >= maxSessions) return callback(new Error("(SSH) Channel open failure: open failed"));
        open += 1;
        peak = Math.max(peak, open);
        const channel = new FakeChannel();
        callback(undefined, channel);
        setTimeout(() => {
          open -= 1;
          channel.emit("close", 0);
        }, ms);
      }, 1);
    },
  });
  return { chain: { client, close: () => {} } as unknown as SshChain, peak: () => peak };
}

describe("the SSH transport and an abort", () => {
  it("stops a command that was aborted while it waited for its channel", async () => {
    const abort = new AbortController();
    abort.abort();
    const { chain, channels } = fakeChain(() => {});
    const running = createSshTransport("h", chain).run({ argv: ["sleep", "9"], signal: abort.signal });
    await new Promise((r) => setImmediate(r));
    const channel = channels[0] as FakeChannel;
    expect(channel.requests).toEqual(["signal TERM", "close"]);
    channel.emit("close", null, "SIGTERM");
    expect((await running).signal).toBe("SIGTERM");
  });
});

describe("the SSH transport at the server's session limit", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("runs a long burst on a server that allows fewer sessions than it opens, refusals and all", async () => {
    vi.useFakeTimers();
    const server = limitedServer(2, 1000);
    const transport = createSshTransport("h", server.chain, { maxChannels: 8 });
    const runs = Promise.allSettled(Array.from({ length: 20 }, () => transport.run({ argv: ["true"] })));
    await vi.advanceTimersByTimeAsync(30_000);
    const results = await runs;
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    expect(server.peak()).toBe(2);
  });

  it("gives up on a server that refuses every channel", async () => {
    vi.useFakeTimers();
    const transport = createSshTransport("h", limitedServer(0, 1000).chain);
    const run = transport.run({ argv: ["true"] }).catch((e: Error) => e);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await run).toMatchObject({
      message: expect.stringMatching(/cannot open a channel: .*open failed/),
    });
  });
});
