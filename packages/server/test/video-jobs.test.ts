/**
 * Video jobs through the queue (issue 26): a clip uploaded to POST /api/jobs
 * like a still, rendered by `nst worker` through job/video.ts, frames done,
 * an ETA and previews in the job's events, each finished frame in the store,
 * a worker killed mid-clip (SIGKILL) and another resuming at the first
 * unfinished frame, and the .mp4 downloaded: ffprobe reads it, and its frames
 * are those `nst video` makes of the same clip with the same options (the
 * independent reference). Uploads beyond the limits are refused in one line
 * naming the field. A real redis-server, real worker processes, the API in
 * this process (to set its limits), a folder store and then an S3 one (a
 * real S3-protocol server, s3rver), the cpu engine and the built-in blocks
 * 1-3 weights; a tiny clip cut from test/fixtures/video.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadNativeAddon } from '@nst/native';
import { folderStore, frameKey, QUEUE_NAME, redisConnection, s3Store } from '@nst/server';
import {
  call,
  getJson,
  nstBin,
  repoRoot,
  s3Client,
  startApi,
  startCli,
  startProcess,
  startRedis,
  startS3,
  submitJob,
  until,
  type Proc,
} from './helpers.js';

const fixture = path.join(repoRoot, 'test', 'fixtures', 'video', 'tubingen-pan-zoom.mp4');
const styleFile = path.join(repoRoot, 'examples', 'images', 'starry_night.jpg');
const ffmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const loaded = loadNativeAddon();
const flow = loaded.ok && loaded.addon.flowInfo().available;
const ready = existsSync(nstBin) && existsSync(path.join(repoRoot, 'packages', 'cli', 'dist', 'main.js')) && ffmpeg && Boolean(flow);

const FRAMES = 8;
// Enough iterations that a frame takes a good fraction of a second: the test sees the clip mid-way.
const OPTIONS = { size: '64', iterations: '40', 'first-frame-iterations': '50', 'temporal-weight': '100000' };
const token = 'video-jobs-test-token';

/** A clip cut from the fixture: `frames` frames from `from`, scaled to `width` wide, at `fps` (H.264, no audio). */
function cut(file: string, frames: number, width: number, fps = 24, from = 30): string {
  const r = spawnSync(
    'ffmpeg',
    [
      ...['-v', 'error', '-y', '-i', fixture, '-vf', `select='gte(n\\,${from})',setpts=N/(${fps}*TB),scale=${width}:-2`, '-r', String(fps)],
      ...['-frames:v', String(frames), '-an', '-c:v', 'libx264', '-crf', '12', '-pix_fmt', 'yuv420p', file],
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return file;
}

function probe(file: string) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-show_streams', '-of', 'json', file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return (
    JSON.parse(r.stdout) as {
      streams: { codec_type: string; codec_name: string; width: number; height: number; r_frame_rate: string; nb_read_frames: string }[];
    }
  ).streams;
}

const rgb = async (file: string) => Buffer.from(await sharp(file).removeAlpha().raw().toBuffer());
const meanAbs = (a: Buffer, b: Buffer) => {
  let sum = 0;
  for (let k = 0; k < a.length; k++) sum += Math.abs(a[k] - b[k]);
  return sum / a.length;
};

describe.skipIf(!ready && process.env.CI !== 'true')('video jobs through the queue', () => {
  const procs: Proc[] = [];
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-video-jobs-'));
  const store = path.join(dir, 'store');
  const workerEnv = { NST_CACHE_DIR: path.join(dir, 'cache'), NST_WEIGHTS: '' };
  let api: Awaited<ReturnType<typeof startApi>> | undefined;
  let redisUrl = '';
  let clip = '';
  const style = new Blob([readFileSync(styleFile)]);

  beforeAll(async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    redisUrl = redis.url;
    mkdirSync(store);
    api = await startApi(redis.url, {
      store: folderStore(store),
      token,
      eventsEveryMs: 200,
      limits: { videoFrames: 10, videoSeconds: 2, videoPixels: 160 * 90 },
    });
    clip = cut(path.join(dir, 'clip.mp4'), FRAMES, 96);
  }, 120_000);
  afterAll(async () => {
    await api?.close();
    for (const p of procs.reverse()) await p.stop('SIGKILL');
  });

  it('refuses uploads beyond the limits, and video options for a still, in one line naming the field', async () => {
    const base = api!.base;
    const video = (file: string) => new Blob([readFileSync(file)]);
    const refused = async (content: Blob, fields: Record<string, string>) => {
      const r = await submitJob(base, token, { content, style }, fields);
      expect(String(r.body.error)).not.toContain('\n');
      return r;
    };
    expect(await refused(video(cut(path.join(dir, 'long.mp4'), 12, 96)), OPTIONS)).toEqual({
      status: 413,
      body: { error: 'content: the video has 12 frames, more than 10', field: 'content' },
    });
    expect(await refused(video(cut(path.join(dir, 'slow.mp4'), 6, 96, 2)), OPTIONS)).toEqual({
      status: 413,
      body: { error: 'content: the video is 3.0 s long, more than 2 s', field: 'content' },
    });
    expect(await refused(video(cut(path.join(dir, 'wide.mp4'), 4, 320)), OPTIONS)).toEqual({
      status: 413,
      body: { error: "content: the video's frames are 320x180, more than 14400 pixels each", field: 'content' },
    });
    // MP4's magic but no video in it.
    const broken = Buffer.concat([readFileSync(clip).subarray(0, 64), Buffer.alloc(256)]);
    expect(await refused(new Blob([broken]), OPTIONS)).toEqual({
      status: 400,
      body: { error: 'content: not a video this server can read', field: 'content' },
    });
    expect(await refused(video(clip), { ...OPTIONS, 'frame-init': 'independent' })).toMatchObject({
      status: 400,
      body: { field: 'frame-init' },
    });
    expect(await refused(video(clip), { ...OPTIONS, iterations: '9000' })).toMatchObject({ status: 413, body: { field: 'iterations' } });
    expect(await refused(style, { size: '64', 'temporal-weight': '100' })).toEqual({
      status: 400,
      body: { error: 'temporal-weight: is an option of video jobs (the content is an image)', field: 'temporal-weight' },
    });
  });

  it('renders a clip frame by frame, resumes at the first unfinished frame after its worker is killed, and has an .mp4 to download', async () => {
    const base = api!.base;
    // A lock long enough for a loaded machine (a render blocks the event loop between iterations), short enough for the test.
    const workerArgs = ['worker', '--store', store, '--backend', 'cpu', '--lock-seconds', '8', '--preview-seconds', '1'];
    const first = startCli(workerArgs, redisUrl, workerEnv);
    procs.push(first);
    // Every progress the workers write, in order (the events stream below samples them every 200 ms).
    const queueEvents = new QueueEvents(QUEUE_NAME, { connection: redisConnection(redisUrl) });
    onTestFinished(() => queueEvents.close());
    await queueEvents.waitUntilReady();
    const written: { jobId: string; done?: number }[] = [];
    queueEvents.on('progress', ({ jobId, data }) => written.push({ jobId, done: (data as { frames?: { done: number } }).frames?.done }));
    await first.waitFor(/worker ready/, 120_000);

    const submitted = await submitJob(base, token, { content: new Blob([readFileSync(clip)]), style }, OPTIONS);
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    const id = submitted.body.id as string;
    const events: { event: string; data: Record<string, unknown> }[] = [];
    const watching = (async () => {
      const res = await fetch(`${base}/api/jobs/${id}/events`, { headers: { authorization: `Bearer ${token}` } });
      const text = await res.text(); // the stream ends with the job
      for (const block of text.split('\n\n').filter(Boolean)) {
        const m = /^event: (\w+)\ndata: (.*)$/s.exec(block);
        if (m) events.push({ event: m[1], data: JSON.parse(m[2]) });
      }
    })().catch(() => undefined); // a failed test's stream is cut

    // Killed once two frames are in the store (mid-clip: eight frames).
    const frameFile = (t: number) => path.join(store, 'frames', id, `${String(t + 1).padStart(6, '0')}.png`);
    await until(async () => existsSync(frameFile(1)), 240_000, 'two frames in the store', 20);
    await first.stop('SIGKILL');
    const stored = Array.from({ length: FRAMES }, (_, t) => t).filter((t) => existsSync(frameFile(t))).length;
    expect(stored).toBeGreaterThanOrEqual(2);
    expect(stored).toBeLessThan(FRAMES);
    const identity = (t: number) => `${statSync(frameFile(t)).ino}:${statSync(frameFile(t)).mtimeMs}`;
    const before = Array.from({ length: stored }, (_, t) => identity(t));
    const renderedBy = (p: Proc) =>
      [...p.output().matchAll(new RegExp(`video ${id}: frame (\\d+)/${FRAMES} done`, 'g'))].map((m) => Number(m[1]));
    expect(renderedBy(first).slice(0, stored)).toEqual(Array.from({ length: stored }, (_, t) => t + 1));

    // The job's progress as the first worker left it: the frames done (the last one stored may not be reported yet).
    const view = (await getJson(`${base}/api/jobs/${id}`, token)).body;
    expect(view.frames).toMatchObject({ total: FRAMES });
    expect((view.frames as { done: number }).done).toBeGreaterThanOrEqual(stored - 1);

    const second = startCli(workerArgs, redisUrl, workerEnv);
    procs.push(second);
    onTestFinished(() => second.stop()); // the next tests' jobs are their own workers', whatever happens here
    await second.waitFor(new RegExp(`video ${id}: ${stored} of ${FRAMES} frames done before`), 120_000);
    // The frames it found were not made again: the same files, untouched, until the video is stored.
    expect(Array.from({ length: stored }, (_, t) => identity(t))).toEqual(before);
    await until(async () => (await getJson(`${base}/api/jobs/${id}`, token)).body.state === 'done', 300_000, 'the video job').catch((e) => {
      throw new Error(`${(e as Error).message}; the worker said:\n${second.output().slice(-3000)}`);
    });
    await watching;
    expect(renderedBy(second), second.output()).toEqual(Array.from({ length: FRAMES - stored }, (_, k) => stored + k + 1));

    // Events: frames done rising to the end, seconds per frame and an ETA while it ran, previews, the end.
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data);
    const done = progress.map((p) => (p.frames as { done: number }).done);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    // And every progress written: the second worker starts at the frames stored, never below.
    const doneWritten = written.filter((w) => w.jobId === id && w.done !== undefined).map((w) => w.done as number);
    expect(doneWritten.length).toBeGreaterThan(FRAMES);
    expect(doneWritten).toEqual([...doneWritten].sort((a, b) => a - b));
    expect(doneWritten).toContain(stored);
    expect(
      progress.some(
        (p) => p.state === 'running' && (p.eta as number) > 0 && ((p.frames as Record<string, number>)['seconds-per-frame'] ?? 0) > 0,
      ),
    ).toBe(true);
    expect(events.find((e) => e.event === 'preview')?.data.image).toMatch(/^data:image\/jpeg;base64,/);
    expect(events.at(-1)).toMatchObject({ event: 'end', data: { id, state: 'done', frames: { total: FRAMES, done: FRAMES }, eta: null } });

    // The .mp4: H.264, every frame, the render size, the clip's frame rate.
    const res = await fetch(`${base}/api/jobs/${id}/result`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('video/mp4');
    const mp4 = path.join(dir, 'result.mp4');
    writeFileSync(mp4, Buffer.from(await res.arrayBuffer()));
    const streams = probe(mp4);
    expect(streams).toHaveLength(1);
    expect(streams[0]).toMatchObject({ codec_type: 'video', codec_name: 'h264', width: 64, height: 36, r_frame_rate: '24/1' });
    expect(Number(streams[0].nb_read_frames)).toBe(FRAMES);
    const png = await fetch(`${base}/api/jobs/${id}/result?format=png`, { headers: { authorization: `Bearer ${token}` } });
    expect(await png.json()).toEqual({ error: "format: 'png' is not mp4 (a video job's result)", field: 'format' });
    for (const of of ['content', 'result']) {
      const thumb = await fetch(`${base}/api/jobs/${id}/thumbnail?of=${of}`, { headers: { authorization: `Bearer ${token}` } });
      expect(thumb.headers.get('content-type'), of).toBe('image/jpeg');
    }

    // The reference: `nst video` on the same clip with the same options, uninterrupted, its frames kept.
    const reference = path.join(dir, 'reference.mp4');
    const flags = Object.entries(OPTIONS).flatMap(([k, v]) => [`--${k}`, v]);
    const cli = startProcess(
      process.execPath,
      [nstBin, 'video', clip, '-s', styleFile, '-o', reference, '--keep-frames', ...flags, '--backend', 'cpu'],
      workerEnv,
    );
    await new Promise<void>((resolve) => cli.child.once('exit', () => resolve()));
    expect(cli.child.exitCode, cli.output()).toBe(0);
    const referenceFrames = readdirSync(path.join(dir, 'reference.frames'))
      .filter((n) => /^\d{6}\.png$/.test(n))
      .sort();
    expect(referenceFrames).toHaveLength(FRAMES);
    // The first stylised frame is kept in the store (the job's thumbnail): the same pixels as the CLI's.
    expect((await rgb(frameFile(0))).equals(await rgb(path.join(dir, 'reference.frames', referenceFrames[0])))).toBe(true);
    // Every frame of the worker's .mp4 decodes to the CLI's: the same frames went into the same encoder.
    const decode = (file: string, out: string) => {
      mkdirSync(out);
      expect(spawnSync('ffmpeg', ['-v', 'error', '-i', file, path.join(out, '%06d.png')]).status).toBe(0);
      return out;
    };
    const got = decode(mp4, path.join(dir, 'decoded'));
    const want = decode(reference, path.join(dir, 'decoded-reference'));
    for (const name of referenceFrames) {
      const [a, b] = [await rgb(path.join(got, name)), await rgb(path.join(want, name))];
      expect(meanAbs(a, b), name).toBeLessThan(0.5);
      // And near the PNG frame it encodes (H.264 at this tiny size costs a few levels).
      expect(meanAbs(a, await rgb(path.join(dir, 'reference.frames', name))), name).toBeLessThan(16);
    }
  }, 900_000);

  it('cancels a running video within seconds (its worker takes the next job); a worker stopped with SIGTERM hands its video back', async () => {
    const base = api!.base;
    const worker = startCli(['worker', '--store', store, '--backend', 'cpu', '--lock-seconds', '8'], redisUrl, workerEnv);
    procs.push(worker);
    await worker.waitFor(/worker ready/, 120_000);
    const submit = async () => {
      const r = await submitJob(base, token, { content: new Blob([readFileSync(clip)]), style }, { ...OPTIONS, iterations: '41' });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return r.body.id as string;
    };
    const stored = (id: string, t: number) => existsSync(path.join(store, 'frames', id, `${String(t + 1).padStart(6, '0')}.png`));
    const state = async (id: string) => (await getJson(`${base}/api/jobs/${id}`, token)).body.state;

    const cancelled = await submit();
    await until(async () => stored(cancelled, 0), 240_000, 'a first frame', 20);
    const asked = Date.now();
    expect((await call('DELETE', `${base}/api/jobs/${cancelled}`, token)).status).toBe(202);
    await until(async () => (await state(cancelled)) === 'cancelled', 30_000, 'the video to be cancelled');
    await worker.waitFor(new RegExp(`job ${cancelled} cancelled`), 30_000);
    const frames = readdirSync(path.join(store, 'frames', cancelled)).length;
    console.log(`video jobs: a running video cancelled in ${Date.now() - asked} ms`);

    // The worker goes on: the next video runs, and SIGTERM hands it back to the queue, its frames kept.
    const next = await submit();
    await until(async () => stored(next, 1), 240_000, 'two frames of the next video', 20);
    await worker.stop('SIGTERM');
    expect(worker.output()).toMatch(new RegExp(`job ${next} goes back to the queue`));
    expect(await state(next)).toBe('queued');
    expect(stored(next, 1)).toBe(true);
    // Nothing more of the cancelled one was rendered.
    expect(readdirSync(path.join(store, 'frames', cancelled))).toHaveLength(frames);
  }, 900_000);

  it('on an S3 store, with no shared folder: a worker killed mid-clip, another resumes from the frames in the bucket', async () => {
    const s3 = await startS3();
    procs.push(s3.proc);
    // A queue of its own: the folder store's workers must not take these jobs.
    const redis = await startRedis();
    procs.push(redis.proc);
    const bucket = s3Store('s3://nst/video', { client: s3Client(s3.url) });
    const s3Api = await startApi(redis.url, { store: bucket, token, eventsEveryMs: 200 });
    try {
      const startWorker = () => {
        // Nothing of this worker's is another's: its own scratch and cache.
        const own = mkdtempSync(path.join(tmpdir(), 'nst-video-machine-'));
        const w = startCli(['worker', '--store', 's3://nst/video', '--backend', 'cpu', '--lock-seconds', '8'], redis.url, {
          ...s3.env,
          TMPDIR: own,
          NST_CACHE_DIR: path.join(own, 'cache'),
          NST_WEIGHTS: '',
        });
        procs.push(w);
        return w;
      };
      const first = startWorker();
      await first.waitFor(/worker ready/, 120_000);
      const submitted = await submitJob(s3Api.base, token, { content: new Blob([readFileSync(clip)]), style }, OPTIONS);
      expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
      const id = submitted.body.id as string;
      const frameStored = async (t: number) => (await bucket.get(frameKey(id, `${String(t + 1).padStart(6, '0')}.png`))) !== undefined;
      await until(() => frameStored(1), 240_000, 'two frames in the bucket', 20);
      await first.stop('SIGKILL');
      let stored = 0;
      while (stored < FRAMES && (await frameStored(stored))) stored++;
      expect(stored).toBeLessThan(FRAMES);

      const second = startWorker();
      await second.waitFor(new RegExp(`video ${id}: ${stored} of ${FRAMES} frames done before`), 120_000);
      await until(async () => (await getJson(`${s3Api.base}/api/jobs/${id}`, token)).body.state === 'done', 300_000, 'the video job');
      const rendered = [...second.output().matchAll(new RegExp(`video ${id}: frame (\\d+)/${FRAMES} done`, 'g'))].map((m) => Number(m[1]));
      expect(rendered).toEqual(Array.from({ length: FRAMES - stored }, (_, k) => stored + k + 1));

      // In the bucket: the .mp4, and of the frames only the first (input and stylised: the thumbnails).
      const keys: string[] = [];
      for await (const b of bucket.list('frames')) keys.push(b.key);
      expect(keys.sort()).toEqual([`frames/${id}/000001.png`, `frames/${id}/input-000001.png`]);
      const res = await fetch(`${s3Api.base}/api/jobs/${id}/result`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.headers.get('content-type')).toBe('video/mp4');
      const mp4 = path.join(dir, 'result-s3.mp4');
      writeFileSync(mp4, Buffer.from(await res.arrayBuffer()));
      expect(Number(probe(mp4)[0].nb_read_frames)).toBe(FRAMES);
    } finally {
      await s3Api.close();
    }
  }, 900_000);
});
