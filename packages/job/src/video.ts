/**
 * nst video: a clip stylised frame by frame with temporal consistency
 * (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016).
 *
 * Every frame is a job of the one pipeline (prepareJob, runJobGroup), made
 * from the video's option values with the frame as its content and its own
 * PNG as its output. A later frame's job names the previous frame's output as
 * its init (so its fingerprint counts the previous result by content), and
 * the pipeline's `adjustInputs` hook (pipeline.ts) turns what was loaded into
 * the frame's start and temporal target: the previous result warped by the
 * backward optical flow (OpenCV's DIS, computed between the input frames at
 * the render size), the content frame where the forward-backward check finds
 * the pixel occluded, and the temporal loss on the pixels that are neither
 * occluded nor on a motion boundary (video-flow.ts).
 *
 * Frames are written as they finish and carry their settings, so the folder
 * of frames is the record a re-run resumes from: a frame whose file records
 * this frame job's fingerprint is done. An interrupted frame leaves its
 * checkpoint, which the next run continues. An .mp4 output is encoded at the
 * end (H.264, the source's frame rate and audio).
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { resizeBilinear, UserError, type LossValues, type WeightSet } from '@nst/core';
import { loadFitOf, type ScaleInputs } from './inputs.js';
import { loadImage } from './image-file.js';
import { jobFromOptions, VIDEO_TEMPORAL_WEIGHT, type JobConfig, type JobOptionValues } from './options.js';
import { prepareJob, runJobGroup, type Engine, type JobEvents, type PreparedJob } from './pipeline.js';
import type { Size } from './schedule.js';
import { readResultSettings } from './settings.js';
import { frameStart, greyOf, resizeFrameStart, type FlowField, type FlowFunction } from './video-flow.js';
import { encodeVideo, extractFrames, ffmpegInfo, frameName, probeVideo, type VideoSource } from './video-io.js';

/** What a video may hold before it is refused (nst video's --max-frames, --max-seconds, --max-pixels). */
export interface VideoLimits {
  readonly maxFrames: number;
  readonly maxSeconds: number;
  /** Pixels of one input frame. */
  readonly maxPixels: number;
}

export const DEFAULT_VIDEO_LIMITS: VideoLimits = { maxFrames: 3000, maxSeconds: 600, maxPixels: 3840 * 2160 };

/** The folder frame rate when none is given. */
export const DEFAULT_FOLDER_FRAME_RATE = 25;

/** What the user asked for. */
export interface VideoSpec {
  /** The job options of every frame (by job field; not content and out). */
  readonly values: JobOptionValues;
  /** A video file, or a folder of frames. */
  readonly input: string;
  /** An .mp4 file, or a folder (numbered PNG frames). */
  readonly output: string;
  readonly limits?: Partial<VideoLimits>;
  /** Only the first `frames` frames. */
  readonly frames?: number;
  /** The optical flow, or why there is none here (a build without OpenCV). */
  readonly flow: FlowFunction | { readonly unavailable: string };
  /** .mp4 output: keep the folder of frames once the video is encoded (default: removed). */
  readonly keepFrames?: boolean;
}

/** A video checked and planned. */
export interface VideoPlan {
  readonly spec: VideoSpec;
  readonly source: VideoSource;
  /** Frames to render. */
  readonly frames: number;
  /** The first frame's job (the options every frame shares, parsed and checked). */
  readonly template: JobConfig;
  readonly outputKind: 'mp4' | 'folder';
  /** Where the output frames go (the output folder, or `<stem>.frames` beside an .mp4). */
  readonly framesDir: string;
  /** Where a video file's frames are decoded to. */
  readonly inputDir: string;
  readonly weights: WeightSet;
}

const VIDEO_EXTENSIONS = ['.mp4'];

/** Job values of the video's options with nst video's defaults: a temporal weight unless frames start independently. */
export function videoValues(values: JobOptionValues): JobOptionValues {
  if (values.temporalWeight !== undefined) return values;
  return { ...values, temporalWeight: values.frameInit === 'independent' ? '0' : String(VIDEO_TEMPORAL_WEIGHT) };
}

/**
 * The job every frame of a video shares (the first frame's, with `content`
 * and `out`), its options parsed and checked as for any job, and against
 * each other as a video's (the HTTP API checks an upload's options with it).
 */
export function videoTemplate(given: JobOptionValues, content: string, out: string): JobConfig {
  const template = jobFromOptions({ ...videoValues(given), content, out });
  if (template.frameInit === 'independent' && template.temporalWeight > 0)
    throw new UserError(
      'a temporal weight needs the previous frame as each frame starts: --frame-init warped, or --temporal-weight 0 for independent frames',
      { code: 'conflict', field: 'frameInit' },
    );
  if (template.resume)
    throw new UserError('a video always continues where it stopped (its frames are its record): no --resume', { field: 'resume' });
  return template;
}

/**
 * Checks a video before anything is decoded or rendered: the options (as the
 * first frame's job), the tools it needs, the output, the source against the
 * limits. Every mistake of the user's surfaces here.
 */
export async function prepareVideo(spec: VideoSpec, weights: WeightSet): Promise<VideoPlan> {
  const output = path.normalize(spec.output);
  const ext = path.extname(output).toLowerCase();
  const isFolder = output.endsWith(path.sep) || ext === '' || (existsSync(output) && (await fs.stat(output)).isDirectory());
  if (!isFolder && !VIDEO_EXTENSIONS.includes(ext))
    throw new UserError(`'${spec.output}' is neither an .mp4 file nor a folder (numbered PNG frames)`, { field: 'out' });
  const outputKind = isFolder ? 'folder' : 'mp4';
  const framesDir = isFolder ? output : path.join(path.dirname(output), `${path.basename(output, path.extname(output))}.frames`);
  const inputDir = path.join(framesDir, isFolder ? '.input' : 'input');

  const template = videoTemplate(spec.values, spec.input, path.join(framesDir, frameName(0)));

  const inputIsFolder = existsSync(spec.input) && (await fs.stat(spec.input)).isDirectory();
  if (!inputIsFolder || outputKind === 'mp4') {
    const tools = ffmpegInfo();
    if (!tools.available) throw new UserError(tools.reason, { code: 'unsupported', field: inputIsFolder ? 'out' : 'content' });
  }
  const source = await probeVideo(spec.input, template.frameRate ?? DEFAULT_FOLDER_FRAME_RATE);
  const limits = { ...DEFAULT_VIDEO_LIMITS, ...spec.limits };
  const frames = Math.min(source.frames, spec.frames ?? Infinity);
  if (source.width * source.height > limits.maxPixels)
    throw new UserError(
      `'${spec.input}' is ${source.width}x${source.height}, more than the ${limits.maxPixels} pixels a frame may have (--max-pixels)`,
      { code: 'too-large', field: 'content' },
    );
  if (frames > limits.maxFrames)
    throw new UserError(
      `'${spec.input}' has ${source.frames} frames, more than the limit of ${limits.maxFrames}: --frames N renders the first N, --max-frames raises the limit`,
      { code: 'too-large', field: 'content' },
    );
  if (frames / source.frameRate.fps > limits.maxSeconds)
    throw new UserError(
      `'${spec.input}' would be ${(frames / source.frameRate.fps).toFixed(1)} s long, more than the limit of ${limits.maxSeconds} s: --frames N renders the first N, --max-seconds raises the limit`,
      { code: 'too-large', field: 'content' },
    );
  if (frames < 1) throw new UserError(`'${spec.input}' has no frames`, { code: 'unreadable', field: 'content' });
  if (frames > 1 && 'unavailable' in spec.flow && !(template.frameInit === 'independent' && template.temporalWeight === 0))
    throw new UserError(`${spec.flow.unavailable} (or --frame-init independent, without temporal consistency)`, {
      code: 'unsupported',
      field: 'frameInit',
    });
  if (outputKind === 'mp4') await fs.mkdir(path.dirname(output), { recursive: true });
  await fs.mkdir(framesDir, { recursive: true });
  return { spec: { ...spec, output }, source, frames, template, outputKind, framesDir, inputDir, weights };
}

/** One frame's outcome. */
export interface FrameReport {
  /** 0-based. */
  readonly frame: number;
  readonly frames: number;
  /** Frames done so far (rendered now or before). */
  readonly done: number;
  /** Already done by an earlier run (its file records this frame's job). */
  readonly skipped: boolean;
  readonly seconds: number;
  /** Mean seconds of the frames rendered so far after the first (which has more iterations); undefined before one. */
  readonly secondsPerFrame?: number;
  /** Estimated seconds to the last frame. */
  readonly etaSeconds?: number;
  readonly file: string;
  readonly losses?: LossValues;
  readonly iterations: number;
}

export interface VideoEvents extends JobEvents {
  /** Before the first frame: how many there are and how many an earlier run finished. */
  onVideoStart?(info: { frames: number; source: VideoSource; size: Size }): void;
  onFrameStart?(frame: number, frames: number, iterations: number): void;
  /** A frame written (or found done); the next frame waits for a promise it returns (a worker storing the frame). */
  onFrameDone?(report: FrameReport): void | Promise<void>;
  /** The .mp4 written (`note`: the audio was re-encoded). */
  onEncoded?(file: string, note?: string): void;
}

export interface VideoResult {
  readonly frames: number;
  readonly rendered: number;
  readonly skipped: number;
  readonly seconds: number;
  /** Mean seconds per rendered frame after the first. */
  readonly secondsPerFrame?: number;
  readonly interrupted: boolean;
  /** The .mp4, or the folder of frames. */
  readonly output: string;
  readonly size: Size;
}

/** Renders a planned video: frames in order, each written as it finishes; an .mp4 is encoded at the end. */
export async function renderVideo(engine: Engine, plan: VideoPlan, events: VideoEvents = {}, signal?: AbortSignal): Promise<VideoResult> {
  const { spec, source, frames, framesDir } = plan;
  const inputs = source.files ? source.files.slice(0, frames) : await decodedFrames(plan);
  const outputs = Array.from({ length: frames }, (_, t) => path.join(framesDir, frameName(t)));
  const values = videoValues(spec.values);
  const fresh = values.fresh === true || values.fresh === 'true';
  const firstIterations = plan.template.firstFrameIterations ?? 2 * plan.template.iterations;

  let size: Size | undefined;
  let flowFrames: { index: number; grey: Uint8Array } | undefined;
  const rendered: number[] = [];
  let firstSeconds: number | undefined;
  let seconds = 0;
  let skipped = 0;
  let interrupted = false;
  for (let t = 0; t < frames; t++) {
    if (signal?.aborted) {
      interrupted = true;
      break;
    }
    const warmStart = t > 0 && plan.template.frameInit === 'warped';
    // A frame's job holds what makes that frame: the first frame is a still
    // (no temporal term; how later frames follow is not its business), and no
    // frame depends on the first frame's iterations but through its result.
    const job = jobFromOptions({
      ...values,
      content: inputs[t],
      out: outputs[t],
      iterations: String(t === 0 ? firstIterations : plan.template.iterations),
      init: warmStart ? outputs[t - 1] : values.init,
      temporalWeight: t === 0 ? '0' : values.temporalWeight,
      firstFrameIterations: undefined,
      frameInit: t === 0 ? undefined : values.frameInit,
      flowPreset: t === 0 || !warmStart ? undefined : values.flowPreset,
      fresh: 'false',
      resume: 'false',
    });
    const prepared = await prepareFrame(job, plan.weights, fresh, events);
    if (size === undefined) {
      size = prepared.size;
      events.onVideoStart?.({ frames, source, size });
    }
    if (!fresh && (await frameDone(outputs[t], prepared.fingerprint))) {
      skipped++;
      await events.onFrameDone?.({
        frame: t,
        frames,
        done: t + 1,
        skipped: true,
        seconds: 0,
        file: outputs[t],
        iterations: job.iterations,
      });
      continue;
    }
    events.onFrameStart?.(t, frames, job.iterations);
    let adjustInputs: PreparedJob['adjustInputs'];
    if (warmStart) {
      const flows = await flowsBetween(plan, inputs, t, prepared.size, flowFrames);
      flowFrames = flows.cache;
      adjustInputs = frameHook(flows.forward, flows.backward, prepared.size, job.temporalWeight > 0);
    }
    const result = await runJobGroup(engine, [{ ...prepared, adjustInputs }], events, signal);
    seconds += result.seconds;
    if (result.interrupted) {
      interrupted = true;
      break;
    }
    if (t === 0) firstSeconds = result.seconds;
    else rendered.push(result.seconds);
    const perFrame = rendered.length > 0 ? rendered.reduce((a, b) => a + b, 0) / rendered.length : undefined;
    const later =
      perFrame ?? (firstSeconds !== undefined ? (firstSeconds * plan.template.iterations) / Math.max(1, firstIterations) : undefined);
    await events.onFrameDone?.({
      frame: t,
      frames,
      done: t + 1,
      skipped: false,
      seconds: result.seconds,
      secondsPerFrame: perFrame,
      etaSeconds: later !== undefined ? later * (frames - t - 1) : undefined,
      file: outputs[t],
      losses: result.finalLosses[0],
      iterations: result.iterations,
    });
  }
  const resultSize = size ?? { width: 0, height: 0 };
  const summary = {
    frames,
    rendered: rendered.length + (firstSeconds !== undefined ? 1 : 0),
    skipped,
    seconds,
    secondsPerFrame: rendered.length > 0 ? rendered.reduce((a, b) => a + b, 0) / rendered.length : undefined,
    size: resultSize,
  };
  if (interrupted) return { ...summary, interrupted, output: framesDir };
  if (plan.outputKind === 'mp4') {
    const { note } = await encodeVideo(framesDir, frames, source.frameRate, spec.output, source.audio ? source.path : undefined);
    events.onEncoded?.(spec.output, note);
    if (!spec.keepFrames) await fs.rm(framesDir, { recursive: true, force: true });
  } else if (source.kind === 'file') {
    await fs.rm(plan.inputDir, { recursive: true, force: true });
  }
  return { ...summary, interrupted: false, output: spec.output };
}

/** A frame's job checked and planned: its checkpoint (an interrupted run of this frame) continued, another job's discarded. */
async function prepareFrame(job: JobConfig, weights: WeightSet, fresh: boolean, events: VideoEvents): Promise<PreparedJob> {
  const notice = (line: string) => events.onNotice?.(line, true);
  if (fresh) return prepareJob({ ...job, fresh: true }, weights, { notice });
  try {
    return await prepareJob({ ...job, resume: true }, weights, { notice });
  } catch (e) {
    // A checkpoint of another job (the options changed since): this frame starts again.
    if (e instanceof UserError && e.code === 'conflict' && e.field === 'resume')
      return prepareJob({ ...job, fresh: true }, weights, { notice });
    throw e;
  }
}

/** Whether `file` is a finished frame of the job with this fingerprint. */
async function frameDone(file: string, fingerprint: string): Promise<boolean> {
  if (!existsSync(file)) return false;
  const settings = await readResultSettings(file, 'out').catch(() => undefined);
  return settings?.state === 'final' && settings.fingerprint === fingerprint;
}

/**
 * A video file's frames as PNG files in the plan's input folder, decoded once:
 * a record of the source (path, size, time, frames) lets a re-run reuse them.
 */
async function decodedFrames(plan: VideoPlan): Promise<string[]> {
  const { source, inputDir, frames } = plan;
  const stat = await fs.stat(source.path);
  const record = JSON.stringify({
    source: path.resolve(source.path),
    bytes: stat.size,
    mtimeMs: stat.mtimeMs,
    frames,
    rate: source.frameRate.text,
  });
  const recordFile = path.join(inputDir, 'source.json');
  const files = Array.from({ length: frames }, (_, t) => path.join(inputDir, frameName(t)));
  const previous = await fs.readFile(recordFile, 'utf8').catch(() => undefined);
  if (previous === record && files.every((f) => existsSync(f))) return files;
  await fs.rm(inputDir, { recursive: true, force: true });
  const decoded = await extractFrames(source, inputDir, frames);
  if (decoded.length < frames)
    throw new UserError(`'${source.path}' gave ${decoded.length} frames, not ${frames}`, { code: 'unreadable', field: 'content' });
  await fs.writeFile(recordFile, record);
  return files;
}

/** The forward (t-1 to t) and backward (t to t-1) flows between input frames t-1 and t at the render size. */
async function flowsBetween(
  plan: VideoPlan,
  inputs: readonly string[],
  t: number,
  size: Size,
  cache: { index: number; grey: Uint8Array } | undefined,
): Promise<{ forward: FlowField; backward: FlowField; cache: { index: number; grey: Uint8Array } }> {
  const flow = plan.spec.flow;
  if ('unavailable' in flow) throw new UserError(flow.unavailable, { code: 'unsupported', field: 'frameInit' });
  const fit = loadFitOf(plan.template);
  const grey = async (k: number) => greyOf(await loadImage(inputs[k], 'content', size, { fit }));
  const previous = cache?.index === t - 1 ? cache.grey : await grey(t - 1);
  const current = await grey(t);
  const field = (data: Float32Array): FlowField => ({ ...size, data });
  return {
    forward: field(flow(previous, current, size, plan.template.flowPreset)),
    backward: field(flow(current, previous, size, plan.template.flowPreset)),
    cache: { index: t, grey: current },
  };
}

/**
 * The pipeline hook of a later frame: at each scale, the loaded init (the
 * previous frame's result) is warped into the frame's start, and with a
 * temporal weight the warped result and the consistency weights become the
 * frame's temporal target (computed at the render size, resampled for a
 * coarser scale).
 */
function frameHook(forward: FlowField, backward: FlowField, size: Size, temporal: boolean): PreparedJob['adjustInputs'] {
  return (inputs: ScaleInputs, step) => {
    const at = step.size;
    // The previous result and the content, loaded at this scale; warped at the render size, where the flow is.
    const previous = scaleTo(inputs.initial, at, size);
    const content = scaleTo(inputs.targets.content.data, at, size);
    const start = resizeFrameStart(frameStart(previous, content, forward, backward), size, at);
    return {
      ...inputs,
      initial: start.initial,
      targets: temporal
        ? { ...inputs.targets, temporal: { image: { ...at, data: start.target }, weights: start.weights } }
        : inputs.targets,
    };
  };
}

function scaleTo(image: Float32Array, from: Size, to: Size): Float32Array {
  return from.width === to.width && from.height === to.height ? image : resizeBilinear(image, 1, from, to);
}
