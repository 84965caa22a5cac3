import {
  checkLayersAvailable,
  DEFAULT_LBFGS,
  formatBytes,
  pixelBounds,
  pixelUnit,
  resizeBilinear,
  UserError,
  type Backend,
  type LossValues,
  type Preprocessing,
  type WeightSet,
} from '@nst/core';
import { fileCheckpointSlot, itemCheckpointStore, type CheckpointSlot } from './checkpoint.js';
import { inputDigests, jobFingerprint, stepFingerprint } from './fingerprint.js';
import { probeImage } from './image-file.js';
import { loadScaleInputs, type ScaleInputs } from './inputs.js';
import { runOptimisation, type RenderEvents, type RenderResult } from './loop.js';
import { adamOf, isInitKind, lossOf, maskedField, maskShape, MASK_FIELDS, namesFile, packingKey, type JobConfig } from './options.js';
import { planRun, type MachineSettings, type RunPlan } from './plan.js';
import { createTiledSession } from './tiled-session.js';
import { checkJobFiles, checkpointPathFor } from './output-safety.js';
import { planScales, sizeNote, type ScaleStep, type Size } from './schedule.js';
import { resultSettings, type ResultSettings } from './settings.js';

/*
 * One job, one pipeline: `nst render`, `nst batch` and `nst worker` all run
 * their jobs through prepareJob and runJobGroup, and none re-implements a
 * step. prepareJob does everything that needs no decoding, once per job: the
 * checks against the weights and of the files, the scale schedule, the
 * fingerprint and where the job resumes. runJobGroup renders jobs whose
 * packing keys are equal as one engine batch: the memory check first, then
 * each scale (inputs decoded at its size, the optimisation loop, checkpoints,
 * and at the end the outputs).
 */

/** An engine ready to render: a backend with the weights loaded, and the machine's memory settings. */
export interface Engine {
  readonly backend: Backend;
  readonly weights: WeightSet;
  /** The machine's memory budget (a worker's --memory); a job's own `memory` may only lower it. Default: what is free less a margin. */
  readonly machine?: Pick<MachineSettings, 'memoryBytes'>;
}

/** Where a job starts: a scale, and the iterations done there (from its checkpoint). */
export interface ResumePoint {
  readonly scale: number;
  readonly iteration: number;
  /** A checkpoint of this job was found (else it starts from the beginning). */
  readonly fromCheckpoint: boolean;
}

const FROM_THE_BEGINNING: ResumePoint = { scale: 0, iteration: 0, fromCheckpoint: false };

/** A job checked and planned, ready to be packed and run. */
export interface PreparedJob {
  readonly job: JobConfig;
  /** The output size. */
  readonly size: Size;
  /** Coarse to fine; the last is the output size. */
  readonly steps: readonly ScaleStep[];
  /** Everything that changes the picture (fingerprint.ts, 'result'): stored with results. */
  readonly fingerprint: string;
  /** What its files record of how they were made (the fingerprint among it). */
  readonly settings: ResultSettings;
  /** The fingerprint of each step's checkpoints. */
  readonly stepFingerprints: readonly string[];
  readonly checkpoint: CheckpointSlot;
  readonly resumeAt: ResumePoint;
  /** Jobs with equal keys can share an engine batch. */
  readonly key: string;
  /**
   * Optional, for a caller that renders the job as a part of something
   * larger (nst video, video.ts: a frame starts from the previous frame
   * warped by the optical flow, and has a temporal target): changes the
   * inputs of scale `index` once they are decoded, before the optimisation
   * uses them. Run one such job alone (a group of one).
   */
  readonly adjustInputs?: (inputs: ScaleInputs, step: ScaleStep, index: number) => ScaleInputs | Promise<ScaleInputs>;
}

export interface PrepareOptions {
  /** Where the job's checkpoint lives (default: `<out>.ckpt`). */
  readonly checkpoint?: CheckpointSlot;
  /** Hears what the user should know (leftovers removed, a photo whose shape changes). */
  readonly notice?: (line: string) => void;
  /** Check and plan only: nothing is removed, and output folders may not exist yet. */
  readonly dryRun?: boolean;
  /**
   * The names the user gave the job's input files, by local path, for what
   * the results record (a worker's inputs are files in its scratch space,
   * which must not reach the user); default: the paths, made absolute.
   */
  readonly inputNames?: ReadonlyMap<string, string>;
  /** How the front end names a job field in a message that points to another option (the CLI: `--fresh`); default: the field. */
  readonly nameField?: (field: string) => string;
}

/**
 * Checks and plans a job before anything is decoded or allocated: every
 * error in its inputs surfaces here, before a backend starts.
 */
export async function prepareJob(job: JobConfig, weights: WeightSet, options: PrepareOptions = {}): Promise<PreparedJob> {
  checkLayersAvailable(
    lossOf(job),
    weights.layers.map((l) => l.name),
    weights.source,
  );
  for (const line of await checkJobFiles(job, weights, options.dryRun)) options.notice?.(line);
  const { contentDims, styleDims } = await probeJobImages(job);
  const { size, steps } = planScales(job, contentDims, styleDims);
  const note = sizeNote(job, contentDims, size);
  if (note) options.notice?.(note);
  const digests = await inputDigests(job);
  const fingerprint = jobFingerprint(job, weights, size, 'result', digests);
  const run = jobFingerprint(job, weights, size, 'run', digests);
  const stepFingerprints = steps.map((step, k) => stepFingerprint(run, k, step));
  const checkpoint = options.checkpoint ?? fileCheckpointSlot(checkpointPathFor(job));
  const resumeAt = job.resume
    ? await resumePoint(checkpoint, stepFingerprints, steps)
    : job.fresh
      ? FROM_THE_BEGINNING
      : await refuseDiscarding(checkpoint, steps, options.nameField ?? ((f) => f));
  const settings = resultSettings(job, weights, size, fingerprint, digests, options.inputNames);
  return { job, size, steps, fingerprint, settings, stepFingerprints, checkpoint, resumeAt, key: packingKey(job, size, resumeAt) };
}

/**
 * The sizes of a job's images from their headers (EXIF rotation applied):
 * a missing or undecodable content, style, init or mask image is an error here,
 * before anything is loaded. Front ends call it before heavier work (the
 * weights, the backend) to report the user's own mistakes first.
 */
export async function probeJobImages(job: JobConfig): Promise<{ contentDims: Size; styleDims: Size[] }> {
  const contentDims = await probeImage(job.content, 'content');
  const styleDims: Size[] = [];
  for (const style of job.style) styleDims.push(await probeImage(style, 'style'));
  if (!isInitKind(job.init)) await probeImage(job.init, 'init');
  for (const field of MASK_FIELDS) for (const file of [job[field] ?? []].flat()) if (namesFile(field, file)) await probeImage(file, field);
  return { contentDims, styleDims };
}

/**
 * A run that starts from the beginning would overwrite (on an interrupt)
 * or remove (at its end) the checkpoint of an interrupted run of this
 * output: refused, saying how to continue it or to discard it.
 */
async function refuseDiscarding(slot: CheckpointSlot, steps: readonly ScaleStep[], name: (field: string) => string): Promise<ResumePoint> {
  const found = await slot.peek();
  if (!found) return FROM_THE_BEGINNING;
  const total = steps.reduce((a, s) => a + s.iterations, 0);
  throw new UserError(
    `${slot.name} holds an interrupted render of this output (iteration ${found.iteration}${steps.length === 1 ? ` of ${total}` : ''}): ${name('resume')} continues it, ${name('fresh')} discards it`,
    { code: 'conflict', field: 'resume' },
  );
}

/** Which scale and iteration a checkpoint continues (none there: the beginning); a checkpoint of another job is refused. */
async function resumePoint(slot: CheckpointSlot, stepFingerprints: readonly string[], steps: readonly ScaleStep[]): Promise<ResumePoint> {
  const found = await slot.peek();
  if (!found) return FROM_THE_BEGINNING;
  const scale = stepFingerprints.indexOf(found.fingerprint);
  if (scale < 0)
    throw new UserError(`checkpoint ${slot.name} belongs to a different job (the inputs' contents, size, loss or weights differ)`, {
      code: 'conflict',
      field: 'resume',
    });
  return { scale, iteration: Math.min(found.iteration, steps[scale].iterations), fromCheckpoint: true };
}

/** What a job group hears while it runs: the loop's events, and the scales. */
export interface JobEvents extends RenderEvents {
  /** Before scale `index` (0-based) of `count` starts. */
  onScale?(index: number, count: number, step: ScaleStep): void;
  /** After a coarse scale ends. */
  onScaleDone?(index: number, result: RenderResult): void;
}

/** The outcome of a group, per job in the group's order. */
export interface GroupResult {
  /** Over every scale run. */
  readonly seconds: number;
  /** Loss evaluations over every scale run. */
  readonly evaluations: number;
  /** Iterations done at the final scale (or the scale it stopped at). */
  readonly iterations: number;
  /** The iteration the last scale run started at (resumed ones). */
  readonly startIteration: number;
  readonly interrupted: boolean;
  readonly finalLosses: readonly LossValues[];
  readonly outPaths: readonly string[];
  /** The final images, batch x H x W x 3, network space. */
  readonly images: Float32Array;
}

/**
 * Renders jobs with equal packing keys (the same options but their inputs
 * and outputs, the same size and resume point) as one engine batch, end to
 * end: the memory check before any image is decoded, then each scale from
 * where the jobs resume, then the outputs. One job is a group of one.
 */
export async function runJobGroup(
  engine: Engine,
  group: readonly PreparedJob[],
  events: JobEvents = {},
  signal?: AbortSignal,
): Promise<GroupResult> {
  const first = group[0];
  if (!first || group.some((p) => p.key !== first.key)) throw new Error('runJobGroup: the jobs of a group must have equal packing keys');
  const job = first.job;
  const batch = group.length;
  const last = first.steps.length - 1;
  // The plan of the largest scale, before anything is decoded: what cannot run in any way is refused now.
  const finalPlan = planGroup(engine, group, last);
  // A fresh start asked for: the checkpoint of an earlier run goes now, so that none of it is mixed in.
  for (const p of group) if (p.job.fresh && !p.resumeAt.fromCheckpoint) await p.checkpoint.discard?.();

  const pre = engine.weights.preprocessing;
  // Adam's lr is in pixel levels (the notebook's space); scale it into the weight set's units.
  const unit = pixelUnit(pre);
  const adam = { ...adamOf(job), lr: job.lr * ((unit[0] + unit[1] + unit[2]) / 3) };
  const start = first.resumeAt.scale;
  let previous: { images: Float32Array; size: Size } | undefined;
  let seconds = 0;
  let evaluations = 0;
  let result: RenderResult | undefined;
  for (let k = start; k <= last; k++) {
    const step = first.steps[k];
    events.onScale?.(k, first.steps.length, step);
    const plan = k === last ? finalPlan : planGroup(engine, group, k);
    const session = { ...step.size, batch, pooling: job.pooling, loss: lossOf(job) };
    if (plan.tiled) events.onNotice?.(tilingNotice(plan));
    if (plan.lbfgsCut)
      events.onNotice?.(
        `L-BFGS keeps ${plan.lbfgsHistory} of ${job.lbfgsHistory ?? DEFAULT_LBFGS.history} curvature pairs: the memory budget holds no more`,
      );
    let inputs: ScaleInputs[] | undefined = await loadGroupInputs(group, k, pre);
    if (k === start) {
      const notes = new Map(inputs.flatMap((i) => i.notes.map((n) => [n.line, n.detail] as const)));
      for (const [line, detail] of notes) events.onNotice?.(line, detail);
    }
    const outputs = inputs.map((i) => i.output);
    const pixels = step.size.width * step.size.height * 3;
    const final = k === last;
    const { tiled } = plan;
    result = await runOptimisation(
      engine.backend,
      {
        session,
        // The inputs are handed over once and dropped here, so that the session's copies are the only ones.
        takeInputs: () => {
          const taken = inputs!;
          inputs = undefined;
          const initialImages = previous
            ? resizeBilinear(previous.images, batch, previous.size, step.size)
            : joinImages(
                taken.map((i) => i.initial),
                pixels,
              );
          previous = undefined;
          return { targets: taken.map((i) => i.targets), initialImages };
        },
        createSession: tiled
          ? async (options) =>
              createTiledSession(engine.backend, {
                ...options,
                core: tiled.core,
                contentTargets: tiled.contentTargets,
                netBudget: tiled.netBudget,
              })
          : undefined,
        preprocessing: pre,
        outPaths: group.map((p) => p.job.out),
        outputs: outputs.map((o, b) => ({ ...o, settings: { ...group[b].settings, backend: engine.backend.detail } })),
        iterations: step.iterations,
        adam,
        optimizer: job.optimizer,
        // Inside the pixel range: what leaves it is clipped when written, so the optimiser should not go there.
        lbfgs: { history: plan.lbfgsHistory ?? job.lbfgsHistory ?? DEFAULT_LBFGS.history, bounds: pixelBounds(pre) },
        writeOutputs: final,
        printEvery: job.printEvery,
        // Coarse scales save nothing on their way; an interrupt still checkpoints them.
        saveEvery: final ? job.saveEvery : 0,
        checkpointEvery: final ? job.checkpointEvery : 0,
        resume: first.resumeAt.fromCheckpoint && k === start,
        checkpoints: itemCheckpointStore(group.map((p) => p.checkpoint.store(p.stepFingerprints[k]))),
      },
      events,
      signal,
    );
    seconds += result.seconds;
    evaluations += result.evaluations;
    if (result.interrupted) break;
    if (!final) events.onScaleDone?.(k, result);
    previous = { images: result.images, size: step.size };
  }
  const r = result!;
  return {
    seconds,
    evaluations,
    iterations: r.iterations,
    startIteration: r.startIteration,
    interrupted: r.interrupted,
    finalLosses: r.finalLosses,
    outPaths: r.outPaths,
    images: r.images,
  };
}

/**
 * Each job's inputs at scale k. In a function of its own so that no local
 * of runJobGroup holds them once the loop has taken them: a suspended async
 * function keeps the values its locals last held (at 8192x8192 the content
 * and the initial image stayed resident through the loop, 1.5 GiB).
 */
async function loadGroupInputs(group: readonly PreparedJob[], k: number, pre: Preprocessing): Promise<ScaleInputs[]> {
  const inputs: ScaleInputs[] = [];
  for (const p of group) {
    const loaded = await loadScaleInputs(p.job, p.steps[k], pre);
    inputs.push(p.adjustInputs ? await p.adjustInputs(loaded, p.steps[k], k) : loaded);
  }
  return inputs;
}

/** One image as it is (no copy), several joined. */
function joinImages(images: readonly Float32Array[], pixels: number): Float32Array {
  if (images.length === 1) return images[0];
  const all = new Float32Array(images.length * pixels);
  images.forEach((image, b) => all.set(image, b * pixels));
  return all;
}

/**
 * The memory plan of scale `k` of a group (plan.ts): untiled when it fits
 * the engine's budget, else tile by tile; refused when neither fits. A
 * masked job is refused on a backend without masks, and where it would be
 * tiled (tile sessions take no masks): never rendered without its masks.
 */
export function planGroup(engine: Engine, group: readonly PreparedJob[], k: number): RunPlan {
  const first = group[0];
  const step = first.steps[k];
  const masked = group.map((p) => maskedField(p.job)).find((f) => f !== undefined);
  if (masked && !engine.backend.supportsMasks)
    throw new UserError(
      `masks (spatial control) are not implemented by ${engine.backend.detail}: choose another backend or precision, or leave the masks out`,
      {
        code: 'unsupported',
        field: masked,
      },
    );
  const plan = planRun(
    engine.backend,
    {
      shape: {
        ...step.size,
        batch: group.length,
        pooling: first.job.pooling,
        loss: lossOf(first.job),
        styleSizes: group.flatMap((p) => p.steps[k].styleSizes),
        ...groupMaskShape(group),
      },
      optimizer: first.job.optimizer,
      lbfgsHistory: first.job.lbfgsHistory ?? DEFAULT_LBFGS.history,
      weightsLoaded: true,
    },
    jobMachineSettings(first.job, engine.machine),
  );
  if (masked && plan.tiled)
    throw new UserError(
      `masks are not supported by tiled renders, and ${step.size.width}x${step.size.height} ${
        typeof first.job.tile === 'number'
          ? `was to be tiled in tiles of ${first.job.tile} px: tile auto renders it untiled where it fits`
          : 'does not fit the memory budget untiled: give it more memory or a smaller size'
      }`,
      { code: 'unsupported', field: masked },
    );
  return plan;
}

/** The masks' part of a group's memory shape: the most regions of a job, and whether any has a content mask. */
function groupMaskShape(group: readonly PreparedJob[]): { regions: number; contentMask: boolean } {
  const shapes = group.map((p) => maskShape(p.job));
  return { regions: Math.max(...shapes.map((s) => s.regions)), contentMask: shapes.some((s) => s.contentMask) };
}

/**
 * The plan's settings for a job on a machine: the job's tiling, and the
 * smaller of the job's memory and the machine's (a worker's --memory).
 */
export function jobMachineSettings(job: Pick<JobConfig, 'memory' | 'tile'>, machine: MachineSettings | undefined): MachineSettings {
  const budgets = [job.memory === undefined ? undefined : job.memory * 2 ** 20, machine?.memoryBytes].filter((b) => b !== undefined);
  return { memoryBytes: budgets.length > 0 ? Math.min(...budgets) : undefined, tile: job.tile };
}

/** One line: how a scale is tiled. */
function tilingNotice(plan: RunPlan): string {
  const t = plan.tiled!;
  return (
    `tiling: ${plan.width}x${plan.height} in ${t.tiles} tiles of ${t.core} px (${t.rows} x ${t.columns}, halo ${t.halo}), exact; ` +
    `content targets ${t.contentTargets === 'keep' ? 'kept' : 'recomputed per tile'}; about ${formatBytes(plan.peak)} at the peak ` +
    `(untiled: ${Number.isFinite(plan.untiledPeak) ? `about ${formatBytes(plan.untiledPeak)}` : 'beyond the engine'}, the budget ${formatBytes(plan.budget)})`
  );
}
