import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '@nst/core';
import { ffmpegInfo, probeVideo } from '@nst/job';
import { HttpError } from './errors.js';
import type { Upload } from './multipart.js';
import type { VideoJobData } from './queue.js';

/** What a video upload may hold (ApiLimits' video ones). */
export interface VideoUploadLimits {
  /** Frames of one video. */
  readonly videoFrames: number;
  /** Seconds of one video. */
  readonly videoSeconds: number;
  /** Pixels of one frame of the upload. */
  readonly videoPixels: number;
}

/**
 * Whether an upload is a video, by its first bytes: an ISO media file (MP4,
 * MOV, M4V, 3GP: 'ftyp' at offset 4), Matroska or WebM (the EBML magic), or
 * an AVI (RIFF ... 'AVI '). Every image format the stills take has other
 * magic numbers, so one file field serves both.
 */
export function isVideoUpload(bytes: Uint8Array): boolean {
  const ascii = (from: number, to: number) => Buffer.from(bytes.subarray(from, to)).toString('latin1');
  if (bytes.length < 12) return false;
  if (ascii(4, 8) === 'ftyp') return true;
  if (bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) return true;
  return ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'AVI ';
}

/**
 * Reads an uploaded video's streams with ffprobe (from a private temporary
 * file, removed at once) and holds it to the limits: frames, seconds and
 * pixels per frame. Errors are one line naming the field, with no path.
 */
export async function checkVideo(upload: Upload, limits: VideoUploadLimits): Promise<VideoJobData> {
  const tools = ffmpegInfo();
  if (!tools.available) throw new HttpError(400, 'this server cannot read videos: ffmpeg is not installed on it', upload.field);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'nst-upload-'));
  const file = path.join(dir, `${randomBytes(6).toString('hex')}.video`);
  try {
    await fs.writeFile(file, upload.bytes);
    let source;
    try {
      source = await probeVideo(file, 25);
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(400, 'not a video this server can read', upload.field);
      throw e;
    }
    if (source.width * source.height > limits.videoPixels)
      throw new HttpError(
        413,
        `the video's frames are ${source.width}x${source.height}, more than ${limits.videoPixels} pixels each`,
        upload.field,
      );
    if (!(source.frames >= 1)) throw new HttpError(400, 'the video has no frames', upload.field);
    if (source.frames > limits.videoFrames)
      throw new HttpError(413, `the video has ${source.frames} frames, more than ${limits.videoFrames}`, upload.field);
    if (source.seconds > limits.videoSeconds)
      throw new HttpError(413, `the video is ${source.seconds.toFixed(1)} s long, more than ${limits.videoSeconds} s`, upload.field);
    return { frames: source.frames, width: source.width, height: source.height, fps: source.frameRate.fps };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
