/**
 * One error hierarchy for the whole tool. Each class maps to one documented exit code;
 * only the CLI entry turns them into a process exit.
 */
import type { Diagnostic } from "./config/diagnostic.js";

export abstract class ReclaimError extends Error {
  abstract readonly exitCode: number;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The playbook or inventory is malformed: every problem found, each with its position. */
export class ConfigError extends ReclaimError {
  readonly exitCode = 4;
  constructor(readonly diagnostics: readonly Diagnostic[]) {
    super(`${diagnostics.length} problem${diagnostics.length === 1 ? "" : "s"} in the configuration`);
  }
}

/** The command line itself is wrong (unknown option, missing argument). */
export class UsageError extends ReclaimError {
  readonly exitCode = 5;
}

/** The user declined the confirmation prompt. */
export class CancelledError extends ReclaimError {
  readonly exitCode = 6;
}

/** A command could not be run at all (not found, transport closed): not the same as a non-zero exit. */
export class TransportError extends ReclaimError {
  readonly exitCode = 1;
}

/** The connection to a host went away: what ran over it may go on there without us. */
export class ConnectionLostError extends TransportError {
  constructor(
    message: string,
    /** The command was never started: it can be sent again on a new connection. */
    readonly notStarted = false,
  ) {
    super(message);
  }
}

/** Anything else that stops a run: the message is meant for the user. */
export class RunError extends ReclaimError {
  readonly exitCode = 1;
}
