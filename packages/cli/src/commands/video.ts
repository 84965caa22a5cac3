import type { Command } from 'commander';
import { isUserError, UserError } from '@nst/core';
import {
  DEFAULT_VIDEO_LIMITS,
  ffmpegInfo,
  optionsFor,
  parseCount,
  prepareVideo,
  pretendMissing,
  renderVideo,
  VIDEO_TEMPORAL_WEIGHT,
  withWeightDefaults,
  type FlowFunction,
  type FrameReport,
  type VideoSpec,
} from '@nst/job';
import { loadNativeAddon } from '@nst/native';
import { addBackendOptions, cudaFlagsGiven } from '../backends.js';
import { openEngine, sayFor, VERBOSE_FLAG, weightsFor, weightsInBrief, YES_FLAG, type EngineFlags } from '../engine-options.js';
import { onInterrupt } from '../interrupt.js';
import { addJobFlags, helpDefaultsHere, jobValuesOf } from '../job-flags.js';
import { fmt, formatSeconds } from '../progress.js';

/** `nst video`'s flags: a frame's job options (JOB_OPTIONS, the 'video' front end) but its content and output, and the video's own. */
interface VideoFlags extends EngineFlags {
  [field: string]: unknown;
  out: string;
  frames?: string;
  maxFrames: string;
  maxSeconds: string;
  maxPixels: string;
  keepFrames?: boolean;
  json?: boolean;
  verbose?: boolean;
}

/** The job fields `nst video` takes as flags: IN is an argument and -o its own flag. */
const FIELDS = optionsFor('video').filter((f) => f !== 'content' && f !== 'out');

const EXAMPLES = `
Examples:
  nst video clip.mp4 -s painting.jpg -o styled.mp4
  nst video clip.mp4 -s painting.jpg -o frames/ --size 320     numbered PNG frames
  nst video frames/ -s painting.jpg -o styled.mp4 --frame-rate 24
  nst video clip.mp4 -s painting.jpg -o styled.mp4 --frames 48 --iterations 60 --first-frame-iterations 150
  nst video ...                                                  again after Ctrl-C or a crash: continues at the first unfinished frame
`;

const helpDefaults = { ...(await helpDefaultsHere()), temporalWeight: String(VIDEO_TEMPORAL_WEIGHT) };

/** `nst video`'s flags and action (main.ts names and describes the command). */
export function defineVideoCommand(command: Command): void {
  command.argument('<input>', 'a video file (anything ffmpeg reads) or a folder of frames');
  command.requiredOption('-o, --out <path>', "an .mp4 (H.264, the input's frame rate and audio) or a folder (numbered PNG frames)");
  addJobFlags(command, FIELDS, helpDefaults);
  addBackendOptions(command)
    .option('--frames <n>', 'render only the first n frames')
    .option('--max-frames <n>', 'refuse a video of more frames', String(DEFAULT_VIDEO_LIMITS.maxFrames))
    .option('--max-seconds <s>', 'refuse a video longer than this', String(DEFAULT_VIDEO_LIMITS.maxSeconds))
    .option('--max-pixels <n>', 'refuse frames of more pixels', String(DEFAULT_VIDEO_LIMITS.maxPixels))
    .option('--keep-frames', 'an .mp4 output: keep its folder of frames (<stem>.frames) once the video is encoded')
    .option('--json', 'print one JSON object per event on stdout (start, frame, encoded, summary)')
    .option(...VERBOSE_FLAG)
    .option(...YES_FLAG)
    .addHelpText('after', EXAMPLES)
    .action(async (input: string, flags: VideoFlags) => {
      try {
        await video(input, flags, cudaFlagsGiven(command));
      } catch (e) {
        // IN is an argument, not --content.
        if (isUserError(e) && e.field === 'content') throw new UserError(`${input}: ${e.detail}`, { code: e.code, cause: e });
        throw e;
      }
    });
}

/**
 * The optical flow of the native addon (OpenCV's DIS), or why there is none
 * (the addon missing, or built without OpenCV) with the command that fixes
 * it. NST_PRETEND_MISSING=libopencv-dev pretends the addon was built without it.
 */
export function nativeFlow(): FlowFunction | { unavailable: string } {
  if (pretendMissing('libopencv-dev'))
    return { unavailable: 'OpenCV not found: sudo apt-get install libopencv-dev, then npm run build:native -w @nst/native' };
  const loaded = loadNativeAddon();
  if (!loaded.ok) return { unavailable: `the optical flow needs the native addon: ${loaded.reason}` };
  const info = loaded.addon.flowInfo();
  if (!info.available) return { unavailable: info.detail };
  return (from, to, size, preset) => loaded.addon.opticalFlow({ from, to, width: size.width, height: size.height, preset });
}

/** What video needs here, in one line each (nst backends). */
export function videoStatus(): string[] {
  const tools = ffmpegInfo();
  const flow = nativeFlow();
  const loaded = loadNativeAddon();
  return [
    `ffmpeg ${tools.available ? `yes  ${tools.version}` : `no   ${tools.reason}`}`,
    `flow   ${'unavailable' in flow ? `no   ${flow.unavailable}` : `yes  ${loaded.ok ? loaded.addon.flowInfo().detail : ''}`}`,
  ];
}

async function video(input: string, flags: VideoFlags, cudaFlags: readonly string[]): Promise<void> {
  const say = sayFor(flags);
  const write = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
  const given = jobValuesOf(flags, FIELDS);
  const limits = {
    maxFrames: parseCount(flags.maxFrames, 'maxFrames', 1),
    maxSeconds: parseCount(flags.maxSeconds, 'maxSeconds', 1),
    maxPixels: parseCount(flags.maxPixels, 'maxPixels', 1),
  };
  const frames = flags.frames === undefined ? undefined : parseCount(flags.frames, 'frames', 1);
  const weights = await weightsFor(flags, flags.yes ? say.line : say.detail);
  const { values } = withWeightDefaults(given, weights);
  const spec: VideoSpec = { values, input, output: flags.out, limits, frames, flow: nativeFlow(), keepFrames: flags.keepFrames };
  const plan = await prepareVideo(spec, weights);
  const engine = await openEngine(flags, weights, say.line, cudaFlags, say.detail);
  const interrupt = onInterrupt(say.line, "the current frame's image and checkpoint");
  const t = plan.template;
  const tty = !flags.json && process.stdout.isTTY;
  let bar = '';
  const line = (text: string) => (tty ? process.stdout.write(`\r\x1b[2K${text}\n${bar}`) : say.line(text));
  let current = { frame: 0, iterations: 0, started: 0 };
  let last: FrameReport | undefined;
  const drawBar = (iteration: number) => {
    if (!tty) return;
    const width = 24;
    const done = (current.frame + iteration / Math.max(1, current.iterations)) / plan.frames;
    const filled = Math.round(width * done);
    const rate = last?.secondsPerFrame !== undefined ? `${last.secondsPerFrame.toFixed(1)} s/frame` : '-- s/frame';
    const eta = last?.etaSeconds !== undefined ? formatSeconds(last.etaSeconds) : '--';
    bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] frame ${current.frame + 1}/${plan.frames} iteration ${iteration}/${current.iterations}  ${rate}  ETA ${eta}`;
    process.stdout.write(`\r\x1b[2K${bar}`);
  };
  try {
    const result = await renderVideo(
      engine,
      plan,
      {
        onVideoStart: ({ frames, source, size }) => {
          const mode =
            t.frameInit === 'independent'
              ? 'frames stylised independently'
              : `warm start${t.temporalWeight > 0 ? ` + temporal loss ${t.temporalWeight}` : ''}`;
          const info = `${frames} frames of ${source.path} (${source.width}x${source.height}, ${source.frameRate.fps.toFixed(3).replace(/\.?0+$/, '')} fps${source.audio ? ', audio' : ''}) at ${size.width}x${size.height}, ${t.firstFrameIterations ?? 2 * t.iterations} iterations for the first frame and ${t.iterations} for each later one (${mode}) on ${engine.backend.detail}; weights: ${weightsInBrief(weights, flags.weights)} -> ${plan.spec.output}`;
          if (flags.json)
            write({
              event: 'start',
              frames,
              width: size.width,
              height: size.height,
              fps: source.frameRate.fps,
              audio: source.audio,
              backend: engine.backend.detail,
              output: plan.spec.output,
            });
          else line(`rendering ${info}`);
        },
        onFrameStart: (frame, _frames, iterations) => {
          current = { frame, iterations, started: performance.now() };
          drawBar(0);
        },
        onProgress: (iteration) => drawBar(iteration),
        onFrameDone: (r) => {
          if (!r.skipped) last = r;
          if (flags.json) {
            write({ event: 'frame', ...r, frame: r.frame + 1, losses: r.losses });
            return;
          }
          if (r.skipped) {
            if (flags.verbose || r.frame === 0 || r.done === r.frames)
              line(`frame ${r.frame + 1}/${r.frames}: done by an earlier run (${r.file})`);
            return;
          }
          const rate = r.secondsPerFrame !== undefined ? `, ${r.secondsPerFrame.toFixed(2)} s/frame` : '';
          const eta = r.etaSeconds !== undefined && r.done < r.frames ? `, ETA ${formatSeconds(r.etaSeconds)}` : '';
          const j = r.losses
            ? `  J ${fmt(r.losses.total)}${r.losses.temporal !== undefined ? `  J_temporal ${fmt(r.losses.temporal)}` : ''}`
            : '';
          line(`frame ${r.frame + 1}/${r.frames}: ${r.iterations} iterations in ${r.seconds.toFixed(1)} s${rate}${eta}${j}`);
        },
        onEncoded: (file, note) => {
          if (note) line(note);
          if (flags.json) write({ event: 'encoded', file });
        },
        onNotice: (text, detail) => (detail ? flags.verbose && line(text) : line(text)),
      },
      interrupt.signal,
    );
    if (tty) process.stdout.write('\r\x1b[2K');
    const perFrame = result.secondsPerFrame !== undefined ? ` (${result.secondsPerFrame.toFixed(2)} s per frame after the first)` : '';
    const skipped = result.skipped > 0 ? `; ${result.skipped} done by an earlier run` : '';
    if (flags.json) write({ summary: true, ...result });
    else if (result.interrupted)
      say.line(
        `stopped after ${result.rendered + result.skipped} of ${result.frames} frames in ${result.seconds.toFixed(1)} s; the same command continues at the first unfinished frame (frames in ${result.output})`,
      );
    else say.line(`done: ${result.rendered} frames in ${result.seconds.toFixed(1)} s${perFrame}${skipped}, wrote ${result.output}`);
    if (result.interrupted) process.exitCode = interrupt.exitStatus();
  } finally {
    interrupt.dispose();
    engine.backend.dispose();
  }
}
