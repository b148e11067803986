/**
 * Fault injection: `kill -9` of the reclaim runner, on the real path — the built CLI process, real
 * qcow2 images and qemu-img, a real OpenSSH sshd on loopback, a real guest VM. After every kill
 * the image holds exactly its content (the original, or the verified copy already swapped in), and
 * the next run that is not killed finishes the job, leaves nothing behind, and a run after it
 * finds nothing to change. A conversion may survive the kill (detached on the host): the next run
 * must take it over or discard it; either is fine here, a lost image or a leftover is not.
 *
 * FAULT_TRIALS=N runs N kills per class (the soak, `npm run test:faults`); without it, a few per
 * class (every CI run). FAULT_SEED=S repeats the random draws of the run that printed seed S.
 * The tally goes to test-results/fault-trials.json.
 */
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/cli.js";
import { allocated, bloatedImage, MiB, randomImage } from "../helpers/images.js";
import { type ProcInfo, sleep } from "../lab/proc.js";
import { Lab } from "../lab/sshd.js";
import { type FillGuest, startFillGuest } from "./fill-guest.js";
import { guestKillTrial } from "./guest-trial.js";
import { hostKillTrial } from "./host-trial.js";
import { type Hypervisor, localHypervisor, sshHypervisor } from "./hypervisors.js";
import {
  type ClassTally,
  convertRunning,
  endLeftovers,
  type Missed,
  prng,
  round1,
  runBounded,
  runSeed,
  shown,
  Tally,
  trialCount,
} from "./trials.js";

const lab = new Lab();
const seed = runSeed();
const tally = new Tally(seed);
const strays: ProcInfo[] = [];
/** Tries per trial before it counts as impossible (the CLI ended before the kill could land). */
const ATTEMPTS = 3;

let work: string;
let local: Hypervisor;
let ssh: Hypervisor;
/** 512 MiB virtual, 96 MiB written of which 64 MiB freed inside: a rewrite gives back ~64 MiB. */
let small: string;
/** 512 MiB virtual, 448 MiB written of which 64 MiB freed: a conversion long enough to kill inside. */
let larger: string;
/**
 * 512 MiB virtual, 96 MiB of random data of which 24 MiB freed: compressed (policy compress: true),
 * its conversion takes seconds, so the next run finds it still running and must reattach.
 */
let random: string;

beforeAll(async () => {
  console.log(`kill trials: seed ${seed} (FAULT_SEED=${seed} repeats this run's random draws)`);
  ensureBuilt();
  work = lab.tempDir("reclaim-fault-work-");
  small = `${work}/small.qcow2`;
  larger = `${work}/larger.qcow2`;
  bloatedImage(small, { virtualMiB: 512, writtenMiB: 96, freedMiB: 64 });
  bloatedImage(larger, { virtualMiB: 512, writtenMiB: 448, freedMiB: 64 });
  random = `${work}/random.qcow2`;
  randomImage(random, 96, 512);
  const key = lab.key("id_faults");
  const sshd = await lab.sshd({ authorizedKeys: [key.publicKey] });
  local = localHypervisor(lab, work);
  ssh = sshHypervisor(lab, work, sshd, key);
}, 120_000);

afterAll(async () => {
  await endLeftovers([work], strays);
  console.log(`kill trials: tally in ${tally.write()}`);
  await lab.close();
}, 60_000);

const POLICY = "min_reclaimable: 16MiB, min_ratio: 10%, zero: none";
/** Every step a rewrite can have: keep_backup on, and leftovers of an earlier run to remove. */
const STEPS = [
  "remove-leftovers",
  "convert",
  "copy-attributes",
  "flush",
  "verify",
  "keep-backup",
  "swap",
  "finish-journal",
] as const;

/** Bound for a class of `n` trials of at most `perTrialMs` each (a try that misses costs one more). */
const classTimeout = (n: number, perTrialMs: number) => 120_000 + n * perTrialMs * ATTEMPTS;

/**
 * Runs trials until `n` kills landed. A trial whose CLI simply got to its end before the kill is
 * tried again (at most ATTEMPTS times); one whose CLI failed on its own is recorded at once.
 */
async function runTrials(
  c: ClassTally,
  n: number,
  trial: (i: number, attempt: number) => Promise<true | Missed>,
): Promise<void> {
  const started = performance.now();
  try {
    for (let i = 0; i < n; i++) {
      let outcome: true | Missed = { retry: true, why: "not tried" };
      for (let attempt = 1; attempt <= ATTEMPTS && outcome !== true && outcome.retry; attempt++)
        outcome = await trial(i, attempt);
      if (outcome !== true)
        c.failures.push(`seed ${seed} ${c.class} #${i + 1}: no kill landed: ${outcome.why}`);
    }
  } finally {
    c["duration-s"] = round1((performance.now() - started) / 1000);
    console.log(`kill trials: ${c.class}: ${JSON.stringify(c)}`);
  }
}

/** The class's verdict: no image lost, every next run completed the job, nothing left behind. */
function expectClean(c: ClassTally, n: number): void {
  expect(c.outcomes.lost, c.failures.join("\n")).toBe(0);
  expect(c.failures, `seed ${seed}`).toEqual([]);
  expect(c.trials).toBe(n);
  expect(c["next-run-completed"]).toBe(n);
  expect(c["leftovers-after-next-run"]).toBe(0);
}

/** The bytes a completed rewrite of `template` must get below: half of what it frees is enough. */
function rewrittenBelow(template: string, freedMiB: number): number {
  return allocated(template) - (freedMiB / 2) * MiB;
}

function stepBoundaryClass(which: () => Hypervisor, where: string): void {
  const n = trialCount(STEPS.length, STEPS.length);
  it(`${where}: a kill as any step of a rewrite starts leaves the image intact or replaced, and the next run finishes the job`, {
    timeout: classTimeout(n, 20_000),
  }, async () => {
    const h = which();
    const c = tally.open(`step-boundary (${h.kind})`);
    await runTrials(c, n, (i, attempt) => {
      const step = STEPS[i % STEPS.length] as (typeof STEPS)[number];
      const starts = new RegExp(`^\\[[\\d:]+\\] ${h.host} \\S+/vm\\.qcow2: ${step} started\\b`);
      return hostKillTrial({
        hypervisor: h,
        template: small,
        rewrittenBelow: rewrittenBelow(small, 64),
        policy: `${POLICY}, convert: { keep_backup: true }`,
        staleLeftovers: true,
        point: { at: (line) => starts.test(line) },
        label: `seed ${seed} ${c.class} #${i + 1} (try ${attempt}): kill as ${step} starts`,
        tally: c,
        strays,
      });
    });
    expectClean(c, n);
  });
}

/**
 * How long an uninterrupted conversion runs: from the "convert started" line to the end of its
 * `qemu-img convert` process (polled in /proc), the window the random kills fall into. The step
 * itself lasts longer when the runner follows a detached conversion by polling it.
 */
async function conversionMs(
  h: Hypervisor,
  template: string,
  policy: string,
): Promise<{ qemuImgMs: number; stepMs: number }> {
  const { dir, image } = h.newDisk(template);
  let began = 0;
  let ended = 0;
  let lastSeen = 0;
  let poller: NodeJS.Timeout | undefined;
  try {
    const args = ["apply", "--yes", "--verbose", ...h.files(image, policy)];
    const run = await runBounded(args, h.env, 120_000, (line) => {
      if (/: convert started\b/.test(line)) {
        began = performance.now();
        poller = setInterval(() => {
          if (convertRunning(dir)) lastSeen = performance.now();
        }, 5);
      }
      if (/: convert done\b/.test(line)) {
        ended = performance.now();
        clearInterval(poller);
      }
    });
    expect(run.code, shown(run)).toBe(0);
    expect(ended, shown(run)).toBeGreaterThan(began);
    const stepMs = ended - began;
    return { qemuImgMs: lastSeen > began ? lastSeen - began : stepMs, stepMs };
  } finally {
    clearInterval(poller);
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Conversion {
  name: string;
  template: string;
  freedMiB: number;
  policy: string;
  windowMs: number;
}

function randomDuringConvertClass(which: () => Hypervisor, where: string, fast: number, salt: number): void {
  const n = trialCount(fast);
  it(`${where}: a kill at a random moment of a conversion leaves the image intact, and the next run finishes the job`, {
    timeout: classTimeout(n, 25_000),
  }, async () => {
    const h = which();
    const c = tally.open(`random-during-convert (${h.kind})`);
    // Trials alternate: a plain conversion, and a compressed one the next run finds still running.
    const conversions: Conversion[] = [];
    for (const [name, template, freedMiB, policy] of [
      ["plain", larger, 64, POLICY],
      ["compressed", random, 24, `${POLICY}, convert: { compress: true }`],
    ] as const) {
      const measured = await conversionMs(h, template, policy);
      console.log(
        `kill trials: ${c.class}: an uninterrupted ${name} conversion runs ${Math.round(measured.qemuImgMs)} ms after its step starts (the step: ${Math.round(measured.stepMs)} ms)`,
      );
      conversions.push({ name, template, freedMiB, policy, windowMs: measured.qemuImgMs });
    }
    const draw = prng((seed ^ salt) >>> 0);
    await runTrials(c, n, (i, attempt) => {
      const conversion = conversions[i % conversions.length] as Conversion;
      const delayMs = Math.floor(draw() * conversion.windowMs);
      return hostKillTrial({
        hypervisor: h,
        template: conversion.template,
        rewrittenBelow: rewrittenBelow(conversion.template, conversion.freedMiB),
        policy: conversion.policy,
        point: { at: (line) => /: convert started\b/.test(line), wait: () => sleep(delayMs) },
        label: `seed ${seed} ${c.class} #${i + 1} (try ${attempt}): kill ${delayMs} ms into a ${Math.round(conversion.windowMs)} ms ${conversion.name} conversion`,
        tally: c,
        strays,
      });
    });
    expectClean(c, n);
  });
}

describe("kill -9 of the runner during a host-side rewrite", () => {
  stepBoundaryClass(() => local, "on this machine");
  stepBoundaryClass(() => ssh, "over SSH");
  randomDuringConvertClass(() => local, "on this machine", 3, 0x1001);
  randomDuringConvertClass(() => ssh, "over SSH", 2, 0x2002);
});

describe("kill -9 of the runner during a zero-fill inside a real guest", () => {
  const n = trialCount(2);
  let guest: FillGuest;

  beforeAll(async () => {
    // A reserve in bytes, not a share: a fill then reaches nearly all free space, so once the job
    // is done a further run finds too little left to fill (and does nothing).
    guest = await startFillGuest(
      lab,
      "min_reclaimable: 32MiB, min_ratio: 10%, zero: fill, fill_reserve: 8MiB, shutdown: graceful, shutdown_timeout: 60s",
      { sizeMiB: 512, fillMiB: 96, deleteMiB: 80 },
    );
  }, 240_000);

  it("a kill while the fill file grows changes no file in the guest, and the next run fills, rewrites and starts the guest again", {
    timeout: classTimeout(n, 60_000),
  }, async () => {
    const c = tally.open("zero-fill (guest)");
    const draw = prng((seed ^ 0x3003) >>> 0);
    await runTrials(c, n, (i, attempt) => {
      // Anywhere from the first MiB to near the end of the fill.
      const share = 0.02 + draw() * 0.93;
      return guestKillTrial({
        guest,
        share,
        rewrittenBelow: 64 * MiB,
        label: `seed ${seed} ${c.class} #${i + 1} (try ${attempt}): kill at ${(share * 100).toFixed(0)}% of the fill`,
        tally: c,
      });
    });
    expectClean(c, n);
  });
});
