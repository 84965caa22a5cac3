/**
 * Video files through the system's ffmpeg and ffprobe (Debian: apt-get
 * install ffmpeg): what a video holds, its frames out as PNG files, and
 * frames back into an H.264 video with the source's audio. Only `nst video`
 * needs them; nothing else in nst does.
 */
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { UserError } from '@nst/core';
import { probeImage } from './image-file.js';

/** The command that installs what video needs from the system. */
export const FFMPEG_INSTALL = 'sudo apt-get install ffmpeg';

/** Whether NST_PRETEND_MISSING (as the set-up reads it: Debian package names, comma-separated) names `apt`. */
export function pretendMissing(apt: string): boolean {
  return (process.env.NST_PRETEND_MISSING ?? '').split(',').some((p) => p.trim() === apt);
}

/**
 * ffmpeg's version ("5.1.9-0+deb12u1"), or why video cannot run here (with
 * the command that fixes it). NST_PRETEND_MISSING=ffmpeg pretends it is not
 * installed.
 */
export function ffmpegInfo(): { available: true; version: string } | { available: false; reason: string } {
  if (pretendMissing('ffmpeg')) return { available: false, reason: `ffmpeg not found: ${FFMPEG_INSTALL}` };
  for (const tool of ['ffmpeg', 'ffprobe']) {
    const r = spawnSync(tool, ['-version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) return { available: false, reason: `${tool} not found: ${FFMPEG_INSTALL}` };
  }
  const r = spawnSync('ffmpeg', ['-hide_banner', '-encoders'], { encoding: 'utf8' });
  if (!/\blibx264\b/.test(r.stdout ?? ''))
    return { available: false, reason: `this ffmpeg has no H.264 encoder (libx264): ${FFMPEG_INSTALL} (Debian's has it)` };
  const version = /ffmpeg version (\S+)/.exec(spawnSync('ffmpeg', ['-version'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? 'unknown';
  return { available: true, version };
}

/** A frame rate as ffmpeg writes it ("30000/1001") and its value. */
export interface FrameRate {
  readonly text: string;
  readonly fps: number;
}

/** What a video (or a folder of frames) holds. */
export interface VideoSource {
  readonly kind: 'file' | 'folder';
  readonly path: string;
  readonly width: number;
  readonly height: number;
  readonly frameRate: FrameRate;
  /** Frames (a video file: as counted by ffprobe, or estimated from its duration). */
  readonly frames: number;
  readonly seconds: number;
  /** A video file with an audio stream (copied into an .mp4 output). */
  readonly audio: boolean;
  /** A folder: its frame files in order. */
  readonly files?: readonly string[];
}

/** The image files a folder of frames is read from, in this order: by name, numbers by value (frame2 before frame10). */
export const FRAME_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff'] as const;

/** Parses "30000/1001" or "25". */
export function parseFrameRate(text: string): FrameRate | undefined {
  const m = /^(\d+)(?:\/(\d+))?$/.exec(text.trim());
  if (!m) return undefined;
  const fps = Number(m[1]) / Number(m[2] ?? 1);
  return Number.isFinite(fps) && fps > 0 ? { text: m[2] ? `${m[1]}/${m[2]}` : m[1], fps } : undefined;
}

/** A video file (by ffprobe) or a folder of frames (`folderRate`: its frames per second). */
export async function probeVideo(input: string, folderRate: number): Promise<VideoSource> {
  let stat;
  try {
    stat = await fs.stat(input);
  } catch (e) {
    throw new UserError(`cannot read '${input}' (${(e as NodeJS.ErrnoException).code})`, { code: 'not-found', field: 'content' });
  }
  if (stat.isDirectory()) return probeFolder(input, folderRate);
  const r = await run('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', input]);
  if (r.status !== 0)
    throw new UserError(`'${input}' is not a video ffprobe can read (${firstLine(r.stderr)})`, { code: 'unreadable', field: 'content' });
  const info = JSON.parse(r.stdout) as {
    streams?: {
      codec_type?: string;
      width?: number;
      height?: number;
      r_frame_rate?: string;
      avg_frame_rate?: string;
      nb_frames?: string;
      duration?: string;
    }[];
    format?: { duration?: string };
  };
  const video = info.streams?.find((s) => s.codec_type === 'video' && s.width && s.height);
  if (!video) throw new UserError(`'${input}' has no video stream`, { code: 'unreadable', field: 'content' });
  const rate = parseFrameRate(video.avg_frame_rate ?? '') ?? parseFrameRate(video.r_frame_rate ?? '');
  if (!rate) throw new UserError(`'${input}' has no frame rate ffprobe can tell`, { code: 'unreadable', field: 'content' });
  const seconds = Number(video.duration ?? info.format?.duration ?? NaN);
  const counted = Number(video.nb_frames ?? NaN);
  const frames = Number.isFinite(counted) && counted > 0 ? counted : Math.round(seconds * rate.fps);
  return {
    kind: 'file',
    path: input,
    width: video.width!,
    height: video.height!,
    frameRate: rate,
    frames,
    seconds: Number.isFinite(seconds) ? seconds : frames / rate.fps,
    audio: info.streams?.some((s) => s.codec_type === 'audio') ?? false,
  };
}

async function probeFolder(folder: string, fps: number): Promise<VideoSource> {
  const names = (await fs.readdir(folder)).filter((n) => (FRAME_EXTENSIONS as readonly string[]).includes(path.extname(n).toLowerCase()));
  if (names.length === 0)
    throw new UserError(`'${folder}' holds no frames (${FRAME_EXTENSIONS.join(', ')} files)`, { code: 'not-found', field: 'content' });
  names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const files = names.map((n) => path.join(folder, n));
  const first = await probeImage(files[0], 'content');
  const rate = parseFrameRate(String(fps)) ?? { text: String(fps), fps };
  return {
    kind: 'folder',
    path: folder,
    ...first,
    frameRate: rate,
    frames: files.length,
    seconds: files.length / fps,
    audio: false,
    files,
  };
}

/**
 * Writes the first `count` frames of a video file as `dir/000001.png`, ...
 * (RGB, the source's size and rotation), at a constant `rate` (the
 * source's: a variable-rate source gets frames repeated or dropped, as the
 * output plays at that rate). Returns the files.
 */
export async function extractFrames(source: VideoSource, dir: string, count: number): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true });
  const args = ['-v', 'error', '-nostdin', '-y', '-i', source.path, '-map', '0:v:0', '-fps_mode', 'cfr', '-r', source.frameRate.text];
  args.push('-frames:v', String(count), '-pix_fmt', 'rgb24', path.join(dir, '%06d.png'));
  const r = await run('ffmpeg', args);
  if (r.status !== 0)
    throw new UserError(`ffmpeg could not decode '${source.path}': ${firstLine(r.stderr)}`, { code: 'unreadable', field: 'content' });
  const files = (await fs.readdir(dir)).filter((n) => /^\d{6}\.png$/.test(n)).sort();
  return files.slice(0, count).map((n) => path.join(dir, n));
}

/** The name of output frame `index` (0-based) in a folder: 000001.png, ... */
export function frameName(index: number): string {
  return `${String(index + 1).padStart(6, '0')}.png`;
}

/**
 * Encodes `dir/000001.png ...` (the first `count`) at `rate` into `out`
 * (H.264, yuv420p, CRF 18, even sizes: an odd width or height loses its last
 * column or row), with the audio of `audioFrom` when it has some: copied,
 * or, when its codec cannot go into the container, re-encoded as AAC (the
 * returned note says so). Written beside `out` under a temporary name, then
 * renamed.
 */
export async function encodeVideo(
  dir: string,
  count: number,
  rate: FrameRate,
  out: string,
  audioFrom?: string,
): Promise<{ note?: string }> {
  const tmp = path.join(path.dirname(out), `.${path.basename(out, path.extname(out))}.${process.pid}.tmp${path.extname(out)}`);
  const attempt = async (audio: 'copy' | 'aac' | 'none') => {
    const args = ['-v', 'error', '-nostdin', '-y', '-framerate', rate.text, '-i', path.join(dir, '%06d.png')];
    if (audio !== 'none') args.push('-i', audioFrom!, '-map', '0:v:0', '-map', '1:a:0?', '-c:a', audio === 'copy' ? 'copy' : 'aac');
    // The video's length (not -frames:v, which ends the file before the audio is in): the frames' count at the rate.
    args.push('-t', String(count / rate.fps), '-c:v', 'libx264', '-preset', 'medium', '-crf', '18', '-pix_fmt', 'yuv420p');
    args.push('-vf', 'crop=trunc(iw/2)*2:trunc(ih/2)*2', '-r', rate.text, '-movflags', '+faststart', tmp);
    return run('ffmpeg', args);
  };
  let note: string | undefined;
  let r = await attempt(audioFrom ? 'copy' : 'none');
  if (r.status !== 0 && audioFrom) {
    r = await attempt('aac');
    note = `audio: re-encoded as AAC (its codec cannot be copied into ${path.extname(out)})`;
  }
  if (r.status !== 0) {
    await fs.rm(tmp, { force: true });
    throw new UserError(`ffmpeg could not encode '${out}': ${firstLine(r.stderr)}`, { code: 'unwritable', field: 'out' });
  }
  await fs.rename(tmp, out);
  return { note };
}

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find(Boolean) ?? 'no message'
  );
}

/** Runs a tool to its end, collecting its output (a missing tool: status -1 and the reason). */
function run(command: string, args: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => resolve({ status: -1, stdout, stderr: `${command}: ${e.message} (${FFMPEG_INSTALL})` }));
    child.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr }));
  });
}
