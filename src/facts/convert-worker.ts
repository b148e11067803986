/** Whether a detached conversion of an image runs, ended (and how), or died without a word. */
import {
  parseWorkerState,
  type WorkerFiles,
  type WorkerState,
  workerStateArgv,
} from "../tasks/convert-worker.js";
import { describeFailure } from "../transport/transport.js";
import type { Fact } from "./fact.js";

export const convertWorker: Fact<WorkerFiles, WorkerState> = {
  name: "detached conversion",
  argv: (files) => workerStateArgv(files),
  parse: (result) => {
    if (result.exitCode !== 0) throw new Error(describeFailure(result));
    return parseWorkerState(result.stdout);
  },
};
