#!/usr/bin/env node
import { EXIT } from "../report/exit-code.js";
/** The entry point, and the only place that exits the process. */
import { processIo } from "./io.js";
import { runCli } from "./program.js";

const controller = new AbortController();
let interrupts = 0;
process.on("SIGINT", () => {
  interrupts += 1;
  // First Ctrl-C: stop cleanly (children end, temporary files go). Second: leave now.
  if (interrupts > 1) process.exit(EXIT.interrupted);
  process.stderr.write("\nreclaim: interrupted; stopping and cleaning up (Ctrl-C again to quit at once)\n");
  controller.abort();
});

const code = await runCli(process.argv.slice(2), processIo(), controller.signal);
// Exit now, whatever handle (a socket, a timer) might still be open: the run is over and its output
// written (stdout and stderr are synchronous for files and pipes on Linux).
process.exit(controller.signal.aborted ? EXIT.interrupted : code);
