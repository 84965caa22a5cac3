import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readResultSettings } from '@nst/job';
import { createApiServer, folderStore, openQueue, redisConnection, type RenderQueue } from '@nst/server';
import { getJson, nstBin, repoRoot, startCli, startRedis, submitJob, until, type Proc } from './helpers.js';

// The HTTP API in this process against a real redis-server, with one real worker (the built CLI)
// on a machine with no weights installed: it renders with the built-in blocks 1-3.
const ready = existsSync(nstBin) && existsSync(path.join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));
const token = 'api-test-token-0123';
const small = { size: '32x24', iterations: '20', 'style-layers': 'conv1_1,conv2_1', 'content-layers': 'conv2_2' };

const sha256 = async (b: Blob) =>
  createHash('sha256')
    .update(Buffer.from(await b.arrayBuffer()))
    .digest('hex');

describe.skipIf(!ready && process.env.CI !== 'true')('HTTP API', () => {
  const procs: Proc[] = [];
  let server: ReturnType<typeof createApiServer>;
  let queue: RenderQueue;
  let base = '';
  let store = '';
  let png: Blob;
  let png2: Blob;
  beforeAll(async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    store = path.join(mkdtempSync(path.join(tmpdir(), 'nst-api-')), 'store');
    queue = openQueue(redisConnection(redis.url));
    server = createApiServer({ store: folderStore(store), queue, token, limits: { uploadBytes: 200_000, inputPixels: 400 * 400 } });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const worker = startCli(
      ['worker', '--store', store, '--backend', 'cpu', '--lock-seconds', '5', '--preview-seconds', '0.2', '--checkpoint-every', '5'],
      redis.url,
      { NST_CACHE_DIR: mkdtempSync(path.join(tmpdir(), 'nst-api-cache-')), NST_WEIGHTS: '' },
    );
    procs.push(worker);
    const picture = async (seed: number) =>
      new Blob([
        await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 40 * seed, g: 200 - 30 * seed, b: 90 } } })
          .png()
          .toBuffer(),
      ]);
    [png, png2] = await Promise.all([picture(1), picture(3)]);
    await worker.waitFor(/worker ready: .*; weights: embedded/);
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await queue?.close();
    for (const p of procs.reverse()) await p.stop();
  });

  it('refuses a request without the token, or with a wrong one (401)', async () => {
    expect((await fetch(`${base}/api/jobs`)).status).toBe(401);
    expect((await fetch(`${base}/api/jobs`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    const r = await submitJob(base, undefined, { content: png, style: png2 }, small);
    expect(r).toEqual({ status: 401, body: { error: 'missing or wrong bearer token', field: 'authorization' } });
  });

  it('answers a bad request with a 4xx and one line naming the field', async () => {
    const bad = async (files: Record<string, Blob | Blob[]>, fields: Record<string, string>) => submitJob(base, token, files, fields);
    expect(await bad({ style: png2 }, small)).toEqual({
      status: 400,
      body: { error: 'content: is required (one image file)', field: 'content' },
    });
    expect(await bad({ content: png, style: png2 }, { ...small, iterations: 'lots' })).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/^iterations: 'lots' is not a whole number/), field: 'iterations' },
    });
    expect(await bad({ content: png, style: png2 }, { ...small, 'style-layers': 'conv1_1:' })).toMatchObject({
      status: 400,
      body: { field: 'style-layers' },
    });
    expect(await bad({ content: png, style: png2 }, { ...small, out: '/etc/passwd' })).toEqual({
      status: 400,
      body: { error: 'out: is not an option this server takes', field: 'out' },
    });
    expect(await bad({ content: png, style: png2 }, { ...small, init: '/etc/passwd' })).toMatchObject({
      status: 400,
      body: { field: 'init' },
    });
    expect(await bad({ content: png, style: png2 }, { ...small, colour: 'red' })).toMatchObject({ status: 400, body: { field: 'colour' } });
    expect(await bad({ content: new Blob(['not an image']), style: png2 }, small)).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/^content: not an image/), field: 'content' },
    });
    expect(await bad({ content: png, style: [png2, png] }, { ...small, 'style-blend-weights': '1' })).toMatchObject({
      status: 400,
      body: { field: 'style-blend-weights' },
    });
    // Limits: bytes per upload, decoded pixels, output pixels.
    expect(await bad({ content: png, style: new Blob([new Uint8Array(300_000)]) }, small)).toMatchObject({
      status: 413,
      body: { field: 'style' },
    });
    const huge = new Blob([
      await sharp({ create: { width: 500, height: 500, channels: 3, background: 'white' } })
        .png()
        .toBuffer(),
    ]);
    expect(await bad({ content: huge, style: png2 }, small)).toMatchObject({ status: 413, body: { field: 'content' } });
    expect(await bad({ content: png, style: png2 }, { ...small, size: '2000x2000' })).toMatchObject({
      status: 413,
      body: { field: 'size' },
    });
    // What the CLI refuses, the API refuses too, naming the field, before anything is queued (issue 21:
    // these were answered 201 and failed later on the worker).
    for (const [field, value, pattern] of [
      ['alpha', '-1', /^alpha: expected a number >= 0, got -1$/],
      ['lr', '0', /^lr: expected a positive number, got 0$/],
      ['style-blend-weights', '0', /^style-blend-weights: weights must be non-negative with a positive sum$/],
      ['style-scale', '1000', /^style-scale: 1000 would resize the style images to 32000 pixels/],
      ['beta', '1e308', /^beta: 1e\+308 is too large/],
      ['style-layers', 'conv1_1:1e308', /^style-layers: the weight 1e\+308 of conv1_1 is too large/],
    ] as const)
      expect(await bad({ content: png, style: png2 }, { ...small, [field]: value }), field).toMatchObject({
        status: field === 'style-scale' ? 413 : 400,
        body: { error: expect.stringMatching(pattern), field },
      });
    expect(await bad({ content: png, style: png2 }, { ...small, alpha: '0', beta: '0' })).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/^beta: alpha and beta are both 0/), field: 'beta' },
    });
    // No file was stored and no job queued for any of them.
    expect(existsSync(path.join(store, 'inputs'))).toBe(false);
    expect(await queue.getJobCounts()).toMatchObject({ waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0 });
  });

  it('does not know jobs it never made, whatever the id looks like', async () => {
    for (const id of [
      '00000000-0000-4000-8000-000000000000',
      '..%2F..%2Fetc%2Fpasswd',
      '1',
      '00000000-0000-4000-8000-000000000000/result/x',
    ])
      expect((await getJson(`${base}/api/jobs/${id}`, token)).status).toBe(404);
    expect((await fetch(`${base}/../package.json`)).status).toBe(404);
  });

  it("renders a job (progress events, previews, the result) while a job with a bad input fails alone, with its reason; a job with no layers takes the weight set's own", async () => {
    const good = await submitJob(base, token, { content: png, style: png2 }, { ...small, iterations: '150' });
    // The blocks 1-3 weights have no conv4_2, which only the worker can know.
    const bad = await submitJob(
      base,
      token,
      { content: png2, style: png },
      { size: '32x24', iterations: '5', 'content-layers': 'conv4_2' },
    );
    expect(good.status).toBe(201);
    expect(bad.status).toBe(201);
    const id = good.body.id as string;

    const events: { event: string; data: Record<string, unknown> }[] = [];
    const res = await fetch(`${base}/api/jobs/${id}/events`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text(); // the stream ends with the job
    for (const block of text.split('\n\n').filter(Boolean)) {
      const m = /^event: (\w+)\ndata: (.*)$/s.exec(block);
      if (m) events.push({ event: m[1], data: JSON.parse(m[2]) });
    }
    expect(events.at(-1)).toMatchObject({ event: 'end', data: { id, state: 'done', iteration: 150, iterations: 150 } });
    expect(events.some((e) => e.event === 'progress' && e.data.state === 'running')).toBe(true);
    const preview = events.find((e) => e.event === 'preview');
    expect(preview?.data.image).toMatch(/^data:image\/jpeg;base64,/);

    const view = await getJson(`${base}/api/jobs/${id}`, token);
    expect(view.body).toMatchObject({ id, state: 'done', iteration: 150, iterations: 150, error: null });
    expect((view.body.losses as { total: number }).total).toBeGreaterThan(0);
    const result = await fetch(`${base}/api/jobs/${id}/result`, { headers: { authorization: `Bearer ${token}` } });
    expect(result.headers.get('content-type')).toBe('image/png');
    const resultBytes = Buffer.from(await result.arrayBuffer());
    const meta = await sharp(resultBytes).metadata();
    expect([meta.width, meta.height]).toEqual([32, 24]);
    // The result records its inputs by the names they were uploaded under, with their digests: no path of the worker's.
    const saved = path.join(mkdtempSync(path.join(tmpdir(), 'nst-api-result-')), 'result.png');
    writeFileSync(saved, resultBytes);
    const settings = (await readResultSettings(saved, 'result'))!;
    expect(settings.inputs).toEqual([
      { field: 'content', file: 'content.img', sha256: await sha256(png) },
      { field: 'style', file: 'style.img', sha256: await sha256(png2) },
    ]);
    expect(JSON.stringify(settings)).not.toContain(tmpdir());

    const badId = bad.body.id as string;
    await until(async () => (await getJson(`${base}/api/jobs/${badId}`, token)).body.state === 'failed', 30_000, 'the bad job to fail');
    const failed = (await getJson(`${base}/api/jobs/${badId}`, token)).body;
    expect(failed.error).toMatch(/^content-layers: layer conv4_2 is not in the weight set/);
    expect(failed.attempts).toBe(1); // an input error is not retried
    expect((await fetch(`${base}/api/jobs/${badId}/result`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(409);

    // A job that names no layers takes the built-in set's own (content conv3_2; style conv1_1, conv2_1, conv3_1).
    const plain = await submitJob(base, token, { content: png2, style: png }, { size: '32x24', iterations: '5' });
    const plainId = plain.body.id as string;
    await until(
      async () => ['done', 'failed'].includes((await getJson(`${base}/api/jobs/${plainId}`, token)).body.state as string),
      30_000,
      'the job with no layers',
    );
    expect((await getJson(`${base}/api/jobs/${plainId}`, token)).body).toMatchObject({ state: 'done', error: null });

    const list = (await getJson(`${base}/api/jobs`, token)).body.jobs as { id: string; state: string }[];
    expect(list.map((j) => [j.id, j.state])).toEqual(
      expect.arrayContaining([
        [id, 'done'],
        [badId, 'failed'],
      ]),
    );
    // The inputs were stored once each, by content hash.
    expect(
      readFileSync(
        path.join(
          store,
          'inputs',
          (await import('node:crypto'))
            .createHash('sha256')
            .update(Buffer.from(await png.arrayBuffer()))
            .digest('hex'),
        ),
      ).length,
    ).toBe(png.size);
  });
});
