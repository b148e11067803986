/**
 * The schemas of the JSON reclaim writes (schemas/plan, apply-result, report): they compile, every
 * definition and property is documented for editors, realistic output validates, and they list
 * exactly the fields the TypeScript types have, required where the types require them. The
 * `Shape` records below are checked by the compiler against the types and by this test against
 * the schemas, so a field added to one and not the other fails here.
 */
import { describe, expect, it } from "vitest";
import type { Reserve } from "../../../src/config/model.js";
import type { GuestFilesystem } from "../../../src/guest/filesystems.js";
import type { FileIdentity } from "../../../src/image/journal.js";
import type {
  ConvertSpec,
  DecidingPolicy,
  DiskAction,
  DiskEstimate,
  DiskPlan,
  GuestPlan,
  GuestVmPlan,
  GuestZeroPlan,
  HostPlan,
  Plan,
  PlanTotals,
  Step,
  StepKind,
  ZeroStep,
} from "../../../src/plan/plan.js";
import { type Report, reportOf } from "../../../src/report/report-json.js";
import type {
  DiskResult,
  DiskStatus,
  GuestZeroResult,
  HostRecap,
  RunResult,
  StepResult,
  VmActionResult,
  ZeroOutcome,
} from "../../../src/run/results.js";
import { OUTPUT_SCHEMAS, outputValidator, readSchema, schemaErrors } from "../../helpers/schemas.js";
import { STARTED_AT, samplePlan, sampleResult } from "./sample-run.js";

type SchemaNode = Record<string, unknown>;

/** Each key of T, and whether the type requires it. */
type Shape<T> = {
  // biome-ignore lint/complexity/noBannedTypes: `{}` is what an optional property's Pick accepts
  [K in keyof T]-?: {} extends Pick<T, K> ? "optional" : "required";
};

/** Every value of a string union, checked complete by the compiler. */
type Members<U extends string> = Record<U, true>;

const shapes: Record<string, Record<string, "optional" | "required">> = {
  "plan#": {
    version: "required",
    createdAt: "required",
    hosts: "required",
    totals: "required",
  } satisfies Shape<Plan>,
  "plan#/$defs/hostPlan": {
    host: "required",
    plays: "required",
    unreachable: "optional",
    notes: "optional",
    guests: "required",
  } satisfies Shape<HostPlan>,
  "plan#/$defs/guestPlan": {
    name: "required",
    play: "required",
    playIndex: "required",
    notes: "required",
    zero: "optional",
    vm: "optional",
    disks: "required",
  } satisfies Shape<GuestPlan>,
  "plan#/$defs/guestZeroPlan": {
    guest: "required",
    os: "optional",
    mode: "required",
    reserve: "required",
    filesystems: "required",
    leftovers: "required",
    steps: "required",
    fillBytes: "required",
    hostRoomBytes: "optional",
    fillNotWorth: "optional",
  } satisfies Shape<GuestZeroPlan>,
  "plan#/$defs/reserve/oneOf/0": { kind: "required", ratio: "required" } satisfies Shape<
    Extract<Reserve, { kind: "ratio" }>
  >,
  "plan#/$defs/reserve/oneOf/1": { kind: "required", bytes: "required" } satisfies Shape<
    Extract<Reserve, { kind: "bytes" }>
  >,
  "plan#/$defs/guestFilesystem": {
    mount: "required",
    device: "required",
    type: "required",
    sizeBytes: "required",
    usedBytes: "required",
    availableBytes: "required",
    discard: "required",
  } satisfies Shape<GuestFilesystem>,
  "plan#/$defs/zeroStep/oneOf/0": { kind: "required", mount: "required" } satisfies Shape<
    Extract<ZeroStep, { kind: "trim" }>
  >,
  "plan#/$defs/zeroStep/oneOf/1": { kind: "required", mount: "required", mib: "required" } satisfies Shape<
    Extract<ZeroStep, { kind: "fill" }>
  >,
  "plan#/$defs/zeroStep/oneOf/2": {
    kind: "required",
    mount: "required",
    reason: "required",
  } satisfies Shape<Extract<ZeroStep, { kind: "skip" }>>,
  "plan#/$defs/guestVmPlan": {
    manager: "required",
    state: "required",
    canShutDown: "required",
    shutdown: "required",
    timeoutMs: "required",
    libvirtUri: "optional",
    startCommand: "optional",
    poweroffCommand: "optional",
    startAfter: "optional",
  } satisfies Shape<GuestVmPlan>,
  "plan#/$defs/diskPlan": {
    host: "required",
    guest: "required",
    path: "required",
    action: "required",
    reason: "required",
    steps: "required",
    estimate: "optional",
    virtualSize: "optional",
    convert: "optional",
    identity: "optional",
    leftovers: "required",
    absent: "optional",
    backup: "optional",
    afterShutdown: "optional",
    inUse: "optional",
    decidedBy: "optional",
  } satisfies Shape<DiskPlan>,
  "plan#/$defs/decidingPolicy": {
    minReclaimableBytes: "required",
    minRatio: "required",
    zero: "required",
    fillReserve: "required",
    shutdown: "required",
    shutdownTimeoutMs: "required",
    compress: "required",
    keepBackup: "required",
  } satisfies Shape<DecidingPolicy>,
  "plan#/$defs/step": { kind: "required", description: "required" } satisfies Shape<Step>,
  "plan#/$defs/diskEstimate": {
    allocatedBefore: "required",
    allocatedAfter: "required",
    reclaim: "required",
    method: "required",
  } satisfies Shape<DiskEstimate>,
  "plan#/$defs/convertSpec": {
    sourceFormat: "required",
    targetFormat: "required",
    options: "required",
    bitmaps: "required",
    compress: "required",
    keepBackup: "required",
    reattach: "optional",
  } satisfies Shape<ConvertSpec>,
  "plan#/$defs/fileIdentity": {
    device: "required",
    inode: "required",
    size: "required",
    mtimeSec: "required",
  } satisfies Shape<FileIdentity>,
  "plan#/$defs/planTotals": {
    disksToRewrite: "required",
    disksOk: "required",
    disksSkipped: "required",
    estimatedReclaim: "required",
  } satisfies Shape<PlanTotals>,
  "apply-result#": { plan: "required", result: "required" } satisfies Shape<{
    plan: Plan;
    result: RunResult;
  }>,
  "apply-result#/$defs/runResult": {
    guests: "required",
    vms: "required",
    disks: "required",
    hosts: "required",
    durationMs: "required",
  } satisfies Shape<RunResult>,
  "apply-result#/$defs/stepResult": {
    kind: "required",
    ok: "required",
    durationMs: "required",
    message: "optional",
  } satisfies Shape<StepResult>,
  "apply-result#/$defs/diskResult": {
    host: "required",
    guest: "required",
    path: "required",
    action: "required",
    status: "required",
    message: "required",
    allocatedBefore: "optional",
    allocatedAfter: "optional",
    estimate: "optional",
    steps: "required",
    durationMs: "required",
    detached: "optional",
  } satisfies Shape<DiskResult>,
  "apply-result#/$defs/zeroOutcome": {
    mount: "required",
    kind: "required",
    ok: "required",
    bytes: "required",
    message: "required",
  } satisfies Shape<ZeroOutcome>,
  "apply-result#/$defs/guestZeroResult": {
    host: "required",
    guest: "required",
    ok: "required",
    message: "required",
    outcomes: "required",
    durationMs: "required",
  } satisfies Shape<GuestZeroResult>,
  "apply-result#/$defs/vmActionResult": {
    host: "required",
    guest: "required",
    action: "required",
    manager: "required",
    ok: "required",
    message: "required",
    idle: "optional",
    durationMs: "required",
  } satisfies Shape<VmActionResult>,
  "apply-result#/$defs/hostRecap": {
    host: "required",
    ok: "required",
    changed: "required",
    skipped: "required",
    failed: "required",
    unreachable: "required",
    unreachableReason: "optional",
    allocatedBefore: "required",
    allocatedAfter: "required",
    reclaimed: "required",
  } satisfies Shape<HostRecap>,
  "report#": {
    version: "required",
    tool: "required",
    startedAt: "optional",
    plan: "required",
    result: "optional",
  } satisfies Shape<Report>,
  "report#/properties/tool": { name: "required", version: "required" } satisfies Shape<Report["tool"]>,
};

const enums: Record<string, string[]> = {
  "plan#/$defs/diskAction": Object.keys({
    rewrite: true,
    finish: true,
    cleanup: true,
    ok: true,
    skip: true,
  } satisfies Members<DiskAction>),
  "plan#/$defs/stepKind": Object.keys({
    "remove-leftovers": true,
    convert: true,
    flush: true,
    verify: true,
    "copy-attributes": true,
    "keep-backup": true,
    swap: true,
    "finish-journal": true,
  } satisfies Members<StepKind>),
  "apply-result#/$defs/diskStatus": Object.keys({
    ok: true,
    changed: true,
    skipped: true,
    failed: true,
  } satisfies Members<DiskStatus>),
};

/** The node at `schema#/json/pointer`. */
function nodeAt(where: string): SchemaNode {
  const [name, pointer = ""] = where.split("#");
  let node: unknown = readSchema(name as string);
  for (const key of pointer.split("/").filter(Boolean)) node = (node as Record<string, unknown>)[key];
  if (typeof node !== "object" || node === null) throw new Error(`nothing at ${where}`);
  return node as SchemaNode;
}

/** Every subschema that stands for a value (not the $defs container or a properties map itself). */
function subschemas(node: SchemaNode, path = "#"): [string, SchemaNode][] {
  const found: [string, SchemaNode][] = [[path, node]];
  for (const [key, value] of Object.entries(node)) {
    if (key === "properties" || key === "$defs") {
      for (const [name, child] of Object.entries(value as Record<string, SchemaNode>)) {
        found.push(...subschemas(child, `${path}/${key}/${name}`));
      }
    } else if (key === "oneOf") {
      (value as SchemaNode[]).forEach((child, i) => {
        found.push(...subschemas(child, `${path}/oneOf/${i}`));
      });
    }
  }
  return found;
}

describe.each(OUTPUT_SCHEMAS)("schemas/%s.schema.json", (name) => {
  const schema = readSchema(name);

  it("is a draft 2020-12 schema with its $id that ajv compiles in strict mode", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(schema.$id).toBe(`https://reclaim.dev/schemas/${name}.schema.json`);
    expect(() => outputValidator(name)).not.toThrow();
  });

  it("gives a title and a description to every definition and property", () => {
    const missing = subschemas(schema)
      .filter(([, node]) => typeof node.title !== "string" || typeof node.description !== "string")
      .map(([path]) => path);
    expect(missing).toEqual([]);
  });
});

describe("the schemas and the types", () => {
  it.each(Object.entries(shapes))(
    "%s has the fields of its type, required where the type requires them",
    (where, shape) => {
      const node = nodeAt(where);
      expect(Object.keys(node.properties as object).sort()).toEqual(Object.keys(shape).sort());
      expect([...((node.required as string[] | undefined) ?? [])].sort()).toEqual(
        Object.entries(shape)
          .filter(([, v]) => v === "required")
          .map(([k]) => k)
          .sort(),
      );
      expect(node.additionalProperties).toBe(false);
    },
  );

  it.each(Object.entries(enums))("%s lists every value of its type", (where, values) => {
    expect([...(nodeAt(where).enum as string[])].sort()).toEqual([...values].sort());
  });

  it("describes every definition of the schemas with a type or an enum above", () => {
    const defs = OUTPUT_SCHEMAS.flatMap((name) =>
      Object.keys((readSchema(name).$defs as object | undefined) ?? {}).map((d) => `${name}#/$defs/${d}`),
    );
    const covered = (d: string) =>
      d in enums || d in shapes || Object.keys(shapes).some((s) => s.startsWith(`${d}/`));
    expect(defs.filter((d) => !covered(d))).toEqual([]);
  });
});

describe("realistic output validates", () => {
  const plan = samplePlan();
  const result = sampleResult(plan);
  // As the CLI prints and writes them: through JSON.
  const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

  it("a plan with every kind of disk, guest-side steps, VMs and an unreachable host", () => {
    expect(schemaErrors("plan", asJson(plan))).toEqual([]);
  });

  it("the {plan, result} that apply --json prints", () => {
    expect(schemaErrors("apply-result", asJson({ plan, result }))).toEqual([]);
  });

  it("the report of an apply and of a plan", () => {
    const context = { toolVersion: "0.1.0", startedAt: STARTED_AT };
    expect(schemaErrors("report", asJson(reportOf(plan, result, context)))).toEqual([]);
    expect(schemaErrors("report", asJson(reportOf(plan, undefined, { toolVersion: "0.1.0" })))).toEqual([]);
  });

  it("and the schemas still refuse what the types do not allow", () => {
    const broken = asJson({ plan, result }) as { result: { disks: { status: string }[] } };
    (broken.result.disks[0] as { status: string }).status = "done";
    expect(schemaErrors("apply-result", broken)).not.toEqual([]);
    expect(schemaErrors("plan", { ...(asJson(plan) as object), createdAt: "yesterday" })).not.toEqual([]);
  });
});
