/**
 * `nst video` end to end, the built CLI on the clip whose motion is known
 * (test/fixtures/video), tiny: 64x36, a few frames, a few iterations, the
 * built-in blocks 1-3 weights, the cpu engine. An .mp4 keeps the frame rate
 * and the audio; a folder gets numbered PNG frames that record their
 * settings; a folder of frames is an input too; a render killed mid-clip
 * (SIGKILL) or interrupted (SIGINT: the frame's checkpoint) continues at the
 * first unfinished frame and ends with the frames an uninterrupted run
 * makes; a changed option renders the frames it changes again; the limits,
 * the outputs it cannot write and the tools that are missing are one line
 * each, naming what to do.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { readResultSettings } from '@nst/job';
import { loadNativeAddon } from '@nst/native';
import { available, cliBuilt, jsonLines, newDir, nst, nstAsync, repoRoot } from '@nst/test-helpers';

const clip = path.join(repoRoot, 'test', 'fixtures', 'video', 'tubingen-pan-zoom.mp4');
const style = path.join(repoRoot, 'examples', 'images', 'starry_night.jpg');
const ffmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const loaded = loadNativeAddon();
const flow = loaded.ok && loaded.addon.flowInfo().available;
const runs =
  available(cliBuilt, 'nst video tests: the CLI is not built (npx turbo run build)') &&
  available(ffmpeg, 'nst video tests: ffmpeg is not installed (sudo apt-get install ffmpeg)') &&
  available(
    Boolean(flow),
    'nst video tests: the native addon has no optical flow (sudo apt-get install libopencv-dev, then npm run build:native -w @nst/native)',
  );

/** The tiny render every test starts from. */
const TINY = ['-s', style, '--size', '64', '--iterations', '3', '--first-frame-iterations', '5', '--backend', 'cpu'];

function probe(file: string) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-show_streams', '-of', 'json', file], { encoding: 'utf8' });
  return (
    JSON.parse(r.stdout) as {
      streams: { codec_type: string; codec_name: string; r_frame_rate: string; nb_frames?: string; width?: number; height?: number }[];
    }
  ).streams;
}

const frames = (dir: string) =>
  readdirSync(dir)
    .filter((n) => /^\d{6}\.png$/.test(n))
    .sort();
const pixels = async (file: string) => Buffer.from(await sharp(file).raw().toBuffer());

describe.skipIf(!runs)('nst video', () => {
  it('renders an .mp4 at the input frame rate with its audio copied, reporting frames, seconds per frame and an ETA', () => {
    const dir = newDir('nst-video-');
    const out = path.join(dir, 'styled.mp4');
    const r = nst(['video', clip, '-o', out, ...TINY, '--frames', '4', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const events = jsonLines(r.stdout);
    expect(events[0]).toMatchObject({ event: 'start', frames: 4, width: 64, height: 36, fps: 24, audio: true });
    const done = events.filter((e) => e.event === 'frame');
    expect(done.map((e) => e.frame)).toEqual([1, 2, 3, 4]);
    expect(done.map((e) => e.iterations)).toEqual([5, 3, 3, 3]);
    for (const e of done.slice(1)) {
      expect(e.secondsPerFrame).toBeGreaterThan(0);
      expect(e.losses).toMatchObject({ temporal: expect.any(Number) });
    }
    expect(done[2].etaSeconds).toBeGreaterThan(0);
    expect(events.at(-1)).toMatchObject({ summary: true, frames: 4, rendered: 4, skipped: 0, interrupted: false, output: out });
    const streams = probe(out);
    const video = streams.find((s) => s.codec_type === 'video')!;
    expect(video).toMatchObject({ codec_name: 'h264', r_frame_rate: '24/1', nb_frames: '4', width: 64, height: 36 });
    expect(streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac' });
    // The frames were the resume record; once the video is written they go.
    expect(existsSync(path.join(dir, 'styled.frames'))).toBe(false);
  });

  it('writes a folder of numbered PNG frames, each recording its settings; a folder of frames is an input too', async () => {
    const dir = newDir('nst-video-');
    const out = path.join(dir, 'frames');
    const r = nst(['video', clip, '-o', out, ...TINY, '--frames', '3']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^rendering 3 frames of .* \(640x360, 24 fps, audio\) at 64x36, 5 iterations for the first frame and 3 for each later one \(warm start \+ temporal loss 100000\)/m,
    );
    expect(r.stdout).toMatch(/frame 2\/3: 3 iterations in [\d.]+ s, [\d.]+ s\/frame, ETA \d+s {2}J [\d.e+]+ {2}J_temporal/);
    expect(frames(out)).toEqual(['000001.png', '000002.png', '000003.png']);
    // The decoded input frames are removed at the end.
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
    const first = await readResultSettings(path.join(out, '000001.png'), 'out');
    const second = await readResultSettings(path.join(out, '000002.png'), 'out');
    expect(first).toMatchObject({ state: 'final', size: '64x36' });
    expect(first!.options.temporalWeight).toBeUndefined(); // the first frame is a still
    expect(second!.options).toMatchObject({ temporalWeight: '100000', init: path.join(out, '000001.png') });
    // The frames back in, as a 12 fps video without audio.
    const again = path.join(dir, 'again.mp4');
    const s = nst(['video', out, '-o', again, ...TINY, '--frame-rate', '12']);
    expect(s.status, s.stderr).toBe(0);
    const streams = probe(again);
    expect(streams.map((x) => x.codec_type)).toEqual(['video']);
    expect(streams[0]).toMatchObject({ r_frame_rate: '12/1', nb_frames: '3' });
  });

  it('killed mid-clip (SIGKILL), a re-run starts at the first unfinished frame and ends with the frames of an uninterrupted run', async () => {
    const dir = newDir('nst-video-');
    const whole = path.join(dir, 'whole');
    expect(nst(['video', clip, '-o', whole, ...TINY, '--frames', '5']).status).toBe(0);
    const out = path.join(dir, 'killed');
    const killed = await nstAsync(['video', clip, '-o', out, ...TINY, '--frames', '5', '--json'], (chunk, child) => {
      if (chunk.includes('"frame":3,')) child.kill('SIGKILL');
    });
    expect(killed.status).toBeNull(); // killed
    const left = frames(out);
    expect(left.length).toBeGreaterThanOrEqual(3);
    expect(left.length).toBeLessThan(5);
    const r = nst(['video', clip, '-o', out, ...TINY, '--frames', '5', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const events = jsonLines(r.stdout).filter((e) => e.event === 'frame');
    expect(events.map((e) => e.skipped)).toEqual([...left.map(() => true), ...Array(5 - left.length).fill(false)]);
    for (const name of frames(whole))
      expect((await pixels(path.join(out, name))).equals(await pixels(path.join(whole, name))), name).toBe(true);
  });

  it("interrupted (SIGINT) mid-frame, it keeps that frame's checkpoint, which the re-run continues", async () => {
    const dir = newDir('nst-video-');
    const out = path.join(dir, 'frames');
    const args = ['video', clip, '-o', out, ...TINY.map((a) => (a === '3' ? '400' : a)), '--frames', '3', '--json'];
    let sent = false;
    const stopped = await nstAsync(args, (chunk, child) => {
      if (!sent && chunk.includes('"frame":1,')) {
        sent = true;
        setTimeout(() => child.kill('SIGINT'), 1500);
      }
    });
    expect(stopped.status, stopped.stderr).toBe(130);
    expect(existsSync(path.join(out, '000002.png.ckpt'))).toBe(true);
    expect(existsSync(path.join(out, '000002.partial.png'))).toBe(true);
    const summary = jsonLines(stopped.stdout).at(-1);
    expect(summary).toMatchObject({ summary: true, interrupted: true });
    const r = await nstAsync(args.slice(0, -1));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/frame 1\/3: done by an earlier run/);
    expect(frames(out)).toEqual(['000001.png', '000002.png', '000003.png']);
    expect(existsSync(path.join(out, '000002.png.ckpt'))).toBe(false);
    expect(existsSync(path.join(out, '000002.partial.png'))).toBe(false);
  });

  it('renders again the frames an option changes, and none it does not', () => {
    const dir = newDir('nst-video-');
    const out = path.join(dir, 'frames');
    expect(nst(['video', clip, '-o', out, ...TINY, '--frames', '3']).status).toBe(0);
    const same = jsonLines(nst(['video', clip, '-o', out, ...TINY, '--frames', '3', '--json']).stdout).filter((e) => e.event === 'frame');
    expect(same.map((e) => e.skipped)).toEqual([true, true, true]);
    // The temporal weight is not the first frame's business.
    const changed = jsonLines(nst(['video', clip, '-o', out, ...TINY, '--frames', '3', '--temporal-weight', '500', '--json']).stdout);
    expect(changed.filter((e) => e.event === 'frame').map((e) => e.skipped)).toEqual([true, false, false]);
    const fresh = jsonLines(
      nst(['video', clip, '-o', out, ...TINY, '--frames', '3', '--temporal-weight', '500', '--fresh', '--json']).stdout,
    );
    expect(fresh.filter((e) => e.event === 'frame').map((e) => e.skipped)).toEqual([false, false, false]);
  });

  it('refuses, in one line naming what to do: too many frames, too long, too many pixels, an output it cannot write, what is missing or not a video, a temporal weight without warm start', () => {
    const dir = newDir('nst-video-');
    const run = (...args: string[]) => nst(['video', ...args]);
    const cases: [string[], RegExp][] = [
      [
        [clip, '-o', path.join(dir, 'a.mp4'), ...TINY, '--max-frames', '50'],
        /has 96 frames, more than the limit of 50: --frames N renders the first N, --max-frames raises the limit/,
      ],
      [
        [clip, '-o', path.join(dir, 'a.mp4'), ...TINY, '--max-seconds', '2'],
        /would be 4\.0 s long, more than the limit of 2 s: --frames N .* --max-seconds raises the limit/,
      ],
      [
        [clip, '-o', path.join(dir, 'a.mp4'), ...TINY, '--max-pixels', '10000'],
        /is 640x360, more than the 10000 pixels a frame may have \(--max-pixels\)/,
      ],
      [[clip, '-o', path.join(dir, 'a.avi'), ...TINY], /--out: '.*a\.avi' is neither an \.mp4 file nor a folder/],
      [[path.join(dir, 'none.mp4'), '-o', path.join(dir, 'a.mp4'), ...TINY], /none\.mp4: cannot read .* \(ENOENT\)/],
      [
        [clip, '-o', path.join(dir, 'a.mp4'), ...TINY, '--frame-init', 'independent', '--temporal-weight', '5'],
        /--frame-init: a temporal weight needs the previous frame/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = run(...args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    // A text file posing as a video.
    const fake = path.join(dir, 'fake.mp4');
    writeFileSync(fake, 'not a video');
    const r = run(fake, '-o', path.join(dir, 'b.mp4'), ...TINY);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/fake\.mp4: '.*fake\.mp4' is not a video ffprobe can read/);
  });

  it('says what is missing and the command that installs it: ffmpeg, OpenCV (nst video and nst backends)', () => {
    const dir = newDir('nst-video-');
    mkdirSync(path.join(dir, 'in'));
    const noFfmpeg = nst(['video', clip, '-o', path.join(dir, 'a.mp4'), ...TINY], { NST_PRETEND_MISSING: 'ffmpeg' });
    expect(noFfmpeg.status).toBe(2);
    expect(noFfmpeg.stderr).toMatch(/ffmpeg not found: sudo apt-get install ffmpeg/);
    const noOpencv = nst(['video', clip, '-o', path.join(dir, 'a.mp4'), ...TINY, '--frames', '2'], {
      NST_PRETEND_MISSING: 'libopencv-dev',
    });
    expect(noOpencv.status).toBe(2);
    expect(noOpencv.stderr).toMatch(/OpenCV not found: sudo apt-get install libopencv-dev, then npm run build:native -w @nst\/native/);
    // Independent frames need no flow.
    const independent = nst(['video', clip, '-o', path.join(dir, 'b'), ...TINY, '--frames', '2', '--frame-init', 'independent'], {
      NST_PRETEND_MISSING: 'libopencv-dev',
    });
    expect(independent.status, independent.stderr).toBe(0);
    const backends = nst(['backends'], { NST_PRETEND_MISSING: 'ffmpeg,libopencv-dev' });
    expect(backends.stdout).toMatch(
      /nst video needs:\n {2}ffmpeg no {3}ffmpeg not found: sudo apt-get install ffmpeg\n {2}flow {3}no {3}OpenCV not found: sudo apt-get install libopencv-dev/,
    );
    expect(nst(['backends']).stdout).toMatch(/ {2}ffmpeg yes {2}\S+\n {2}flow {3}yes {2}OpenCV 4\.\d+\.\d+ \(DIS optical flow\)/);
  });
});
