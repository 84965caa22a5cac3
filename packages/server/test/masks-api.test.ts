/**
 * Masks over HTTP (issue 25): `style-mask` and `style-region` file parts, one
 * per style in order (an empty part: none for that style), and one
 * `content-mask`, checked as the CLI checks them and decoded like the images
 * before anything is queued, stored by their SHA-256 like the other inputs,
 * and fetched by a real worker (the built CLI, cpu engine), whose engine
 * either renders the masked job or, lacking masks, fails it once, naming the
 * field, never rendering it without them.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer, folderStore, openQueue, redisConnection, type RenderQueue } from '@nst/server';
import { getJson, nstBin, repoRoot, startCli, startRedis, submitJob, until, type Proc } from './helpers.js';

const ready = existsSync(nstBin) && existsSync(path.join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));
const token = 'masks-api-test-token-0123';
const small = { size: '32x24', iterations: '4', 'style-layers': 'conv1_1,conv2_1', 'content-layers': 'conv2_2' };

const bytesOf = async (b: Blob) => Buffer.from(await b.arrayBuffer());
const sha256 = async (b: Blob) =>
  createHash('sha256')
    .update(await bytesOf(b))
    .digest('hex');

describe.skipIf(!ready && process.env.CI !== 'true')('masks over HTTP', () => {
  const procs: Proc[] = [];
  let server: ReturnType<typeof createApiServer>;
  let queue: RenderQueue;
  let base = '';
  let store = '';
  const blob = async (width: number, height: number, background: { r: number; g: number; b: number }) =>
    new Blob([
      await sharp({ create: { width, height, channels: 3, background } })
        .png()
        .toBuffer(),
    ]);
  let content: Blob;
  let style: Blob;
  let style2: Blob;
  let mask: Blob;
  let redisUrl = '';
  beforeAll(async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    redisUrl = redis.url;
    store = path.join(mkdtempSync(path.join(tmpdir(), 'nst-masks-api-')), 'store');
    queue = openQueue(redisConnection(redis.url));
    server = createApiServer({ store: folderStore(store), queue, token, limits: { uploadBytes: 200_000, inputPixels: 400 * 400 } });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    content = await blob(40, 30, { r: 40, g: 170, b: 90 });
    style = await blob(40, 30, { r: 200, g: 20, b: 90 });
    style2 = await blob(30, 40, { r: 20, g: 20, b: 200 });
    // A mask: the left half white.
    const half = Buffer.alloc(40 * 30);
    for (let y = 0; y < 30; y++) half.fill(255, y * 40, y * 40 + 20);
    mask = new Blob([
      await sharp(half, { raw: { width: 40, height: 30, channels: 1 } })
        .png()
        .toBuffer(),
    ]);
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await queue?.close();
    for (const p of procs.reverse()) await p.stop();
  });

  it('refuses a mask count that differs from the styles, a mask that is no image, two content masks: one line naming the field, nothing stored', async () => {
    const bad = (files: Record<string, Blob | Blob[]>) => submitJob(base, token, { content, style: [style, style2], ...files }, small);
    expect(await bad({ 'style-mask': mask })).toEqual({
      status: 400,
      body: {
        error: 'style-mask: 1 style masks given for 2 style images (one per style, in order; none for a style without)',
        field: 'style-mask',
      },
    });
    expect(await bad({ 'style-region': [mask, mask, mask] })).toMatchObject({ status: 400, body: { field: 'style-region' } });
    expect(await bad({ 'style-mask': [mask, new Blob(['not an image'])] })).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/^style-mask: not an image/), field: 'style-mask' },
    });
    expect(await bad({ 'content-mask': [mask, mask] })).toMatchObject({ status: 400, body: { field: 'content-mask' } });
    expect(await bad({ 'content-mask': new Blob([]) })).toMatchObject({ status: 400, body: { field: 'content-mask' } });
    expect(await bad({ masks: mask })).toMatchObject({ status: 400, body: { field: 'masks' } });
    // As text they are no option: masks are files.
    expect(await submitJob(base, token, { content, style }, { ...small, 'style-mask': 'none' })).toMatchObject({
      status: 400,
      body: { field: 'style-mask' },
    });
    expect(existsSync(path.join(store, 'inputs'))).toBe(false);
    expect(await queue.getJobCounts()).toMatchObject({ waiting: 0, active: 0, completed: 0, failed: 0 });
  });

  it('stores the masks by SHA-256 with the job (an empty part: none for that style); a worker fetches them and renders the job with them', async () => {
    const r = await submitJob(
      base,
      token,
      { content, style: [style, style2], 'style-mask': [mask, new Blob([])], 'content-mask': mask },
      small,
    );
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const id = r.body.id as string;
    const key = `inputs/${await sha256(mask)}`;
    expect(readFileSync(path.join(store, key))).toEqual(await bytesOf(mask));
    const job = await queue.getJob(id);
    expect(job!.data.masks).toEqual({ styleMask: [key, null], contentMask: [key] });
    const view = (await getJson(`${base}/api/jobs/${id}`, token)).body;
    expect(view.names).toMatchObject({ masks: { 'style-mask': ['style-mask.img', null], 'content-mask': ['content-mask.img'] } });

    const worker = startCli(['worker', '--store', store, '--backend', 'cpu', '--lock-seconds', '5'], redisUrl, {
      NST_CACHE_DIR: mkdtempSync(path.join(tmpdir(), 'nst-masks-api-cache-')),
      NST_WEIGHTS: '',
    });
    procs.push(worker);
    await until(
      async () => ['done', 'failed'].includes((await getJson(`${base}/api/jobs/${id}`, token)).body.state as string),
      90_000,
      'the masked job to end',
    );
    const end = (await getJson(`${base}/api/jobs/${id}`, token)).body;
    expect(end.state, String(end.error)).toBe('done');
  });
});
