import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectChain, SshConnectError } from "../../../../src/transport/ssh/connect.js";
import { resolveSshSettings } from "../../../../src/transport/ssh/settings.js";

/** A TCP listener on loopback that only counts who connects: nobody may. */
let server: Server;
let port: number;
let connections = 0;

beforeAll(async () => {
  server = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  port = typeof address === "object" && address ? address.port : 0;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function refusal(promise: Promise<unknown>): Promise<SshConnectError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SshConnectError);
  return error as SshConnectError;
}

describe("connecting to a host whose name or user holds a control character", () => {
  it("refuses an address with a NUL, which the resolver would cut short to another host", async () => {
    const settings = resolveSshSettings(
      {
        alias: "kvm",
        address: "127.0.0.1\0$(touch /tmp/x)",
        port,
        user: "ops",
        privateKeyFile: "/nonexistent",
      },
      undefined,
    );
    const error = await refusal(connectChain(settings, { attempts: 1 }));
    expect(error.message).toBe(
      '"127.0.0.1\\u0000$(touch /tmp/x)" is not a host name or address: it holds a control character',
    );
    expect(error.transient).toBe(false);
    expect(connections).toBe(0);
  });

  it("refuses an address or a user with a line break, named escaped on one line", async () => {
    const address = await refusal(
      connectChain(
        resolveSshSettings(
          { alias: "kvm", address: "127.0.0.1\nProxyCommand x", port, user: "ops" },
          undefined,
        ),
      ),
    );
    expect(address.message).toBe(
      '"127.0.0.1\\nProxyCommand x" is not a host name or address: it holds a control character',
    );
    const user = await refusal(
      connectChain(
        resolveSshSettings({ alias: "kvm", address: "127.0.0.1", port, user: "ops\nroot" }, undefined),
      ),
    );
    expect(user.message).toBe('"ops\\nroot" is not a user name: it holds a control character');
    expect(connections).toBe(0);
  });

  it("refuses a jump host with a control character before connecting to any hop", async () => {
    const settings = resolveSshSettings({ alias: "kvm", address: "127.0.0.1", port, user: "ops" }, undefined);
    settings.jumps = [{ ...settings, alias: "bastion", hostname: "127.0.0.1\u007f" }];
    const error = await refusal(connectChain(settings));
    expect(error.message).toBe(
      '"127.0.0.1\\u007f" is not a host name or address: it holds a control character',
    );
    expect(connections).toBe(0);
  });
});
