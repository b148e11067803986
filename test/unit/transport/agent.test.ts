import { describe, expect, it } from "vitest";
import { agentCommandArgv, createAgentTransport } from "../../../src/transport/agent.js";
import type { CommandSpec, Transport } from "../../../src/transport/transport.js";

interface AgentCall {
  execute: string;
  arguments: Record<string, unknown>;
}

/** A hypervisor whose virsh answers guest-agent commands from `respond`. */
function hypervisor(respond: (call: AgentCall, n: number) => unknown) {
  const calls: AgentCall[] = [];
  const transport: Transport = {
    host: "kvm",
    run: async (spec: CommandSpec) => {
      expect(spec.argv.slice(0, 5)).toEqual(["virsh", "-q", "-c", "qemu:///system", "qemu-agent-command"]);
      const call = JSON.parse(spec.argv.at(-1) as string) as AgentCall;
      calls.push(call);
      const answer = respond(call, calls.length);
      return {
        argv: spec.argv,
        exitCode: answer === undefined ? 1 : 0,
        signal: null,
        stdout: answer === undefined ? "" : JSON.stringify({ return: answer }),
        stderr: answer === undefined ? "error: Guest agent is not responding" : "",
        durationMs: 1,
        timedOut: false,
      };
    },
    close: async () => {},
  };
  return { transport, calls };
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

describe("reaching a guest through the QEMU guest agent", () => {
  it("passes the argv as JSON in one argument, never through a shell", () => {
    const argv = agentCommandArgv("qemu:///system", "web 01", {
      execute: "guest-exec",
      arguments: { path: "sh", arg: ["-c", "echo $(id); rm -rf /"] },
    });
    expect(argv.slice(-4)).toEqual([
      "--domain",
      "web 01",
      "--cmd",
      '{"execute":"guest-exec","arguments":{"path":"sh","arg":["-c","echo $(id); rm -rf /"]}}',
    ]);
  });

  it("runs a command with guest-exec and returns its exit status and decoded output once it exited", async () => {
    const { transport: kvm, calls } = hypervisor((call, n) => {
      if (call.execute === "guest-exec") return { pid: 42 };
      return n < 4
        ? { exited: false }
        : { exited: true, exitcode: 3, "out-data": b64("out\n"), "err-data": b64("err\n") };
    });
    const guest = createAgentTransport({
      hypervisor: kvm,
      uri: "qemu:///system",
      domain: "web01",
      pollMs: 1,
    });
    const r = await guest.run({ argv: ["fstrim", "-v", "/"], stdin: "data" });
    expect(r).toMatchObject({ exitCode: 3, stdout: "out\n", stderr: "err\n", timedOut: false });
    expect(calls[0]).toEqual({
      execute: "guest-exec",
      arguments: { path: "fstrim", arg: ["-v", "/"], "capture-output": true, "input-data": b64("data") },
    });
    expect(calls.slice(1).every((c) => c.execute === "guest-exec-status" && c.arguments.pid === 42)).toBe(
      true,
    );
  });

  it("stops waiting at the timeout and asks the agent to end the process", async () => {
    const { transport: kvm, calls } = hypervisor((call) =>
      call.execute === "guest-exec" ? { pid: 7 } : { exited: false },
    );
    const guest = createAgentTransport({
      hypervisor: kvm,
      uri: "qemu:///system",
      domain: "web01",
      pollMs: 1,
    });
    const r = await guest.run({ argv: ["dd", "if=/dev/zero"], timeoutMs: 30 });
    expect(r).toMatchObject({ exitCode: null, timedOut: true });
    expect(calls.at(-1)).toEqual({ execute: "guest-exec", arguments: { path: "kill", arg: ["-TERM", "7"] } });
  });

  it("fails as a transport error when the agent does not answer", async () => {
    const { transport: kvm } = hypervisor(() => undefined);
    const guest = createAgentTransport({ hypervisor: kvm, uri: "qemu:///system", domain: "web01" });
    await expect(guest.run({ argv: ["true"] })).rejects.toThrow(
      /guest agent of web01: error: Guest agent is not responding/,
    );
  });
});
