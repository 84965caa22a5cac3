import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'bullmq';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { folderStore, openQueue, QUEUE_NAME, redisConnection, StoreUnavailableError, sweepTemporaryFiles } from '@nst/server';
import { canMount, getJson, nstBin, serveToken, startRedis, startServe, submitJob, until, type Proc } from './helpers.js';

// Issue 21: a full store answered `500 internal error: ENOSPC` and kept the dead partial files in .tmp; error
// messages carried absolute server paths. Real file systems: a 1 MiB tmpfs, a read-only bind mount (mounting
// needs root: elsewhere these tests are skipped, with the reason).
const ready = existsSync(nstBin);

/** Noise does not compress: a PNG of about 700 KB. */
const noisePng = async (seed: number) =>
  new Blob([
    await sharp({
      create: { width: 500, height: 500, channels: 3, background: 'black', noise: { type: 'gaussian', mean: 100 + seed, sigma: 50 } },
    })
      .png()
      .toBuffer(),
  ]);

describe.skipIf((!ready || !canMount) && process.env.CI !== 'true')('a failing store (needs root to mount)', () => {
  const procs: Proc[] = [];
  const mounts: string[] = [];
  const mount = (args: string[], at: string) => {
    execFileSync('mount', [...args, at]);
    mounts.push(at);
  };
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    for (const m of mounts.reverse()) spawnSync('umount', [m]);
  });

  it('answers 507 when the store is full, leaves no partial file, and takes the job once there is room', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-full-'));
    const store = path.join(dir, 'store');
    mkdirSync(store);
    mount(['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs'], store);
    const redis = await startRedis();
    procs.push(redis.proc);
    const server = await startServe(redis.url, store);
    procs.push(server.proc);
    const [a, b] = [await noisePng(1), await noisePng(2)];

    // Two inputs of about 700 KB: the first fits in 1 MiB, the second runs out of room half-written.
    expect(a.size).toBeGreaterThan(2 ** 19);
    expect(b.size).toBeGreaterThan(2 ** 19);
    const full = await submitJob(server.base, serveToken, { content: a, style: b }, { size: '32x32', iterations: '5' });
    expect(full).toEqual({ status: 507, body: { error: 'the store is full (ENOSPC)' } });
    expect(readdirSync(path.join(store, '.tmp'))).toEqual([]);
    // What is in the store is whole: every input is under its own hash.
    const inputs = readdirSync(path.join(store, 'inputs'));
    for (const name of inputs)
      expect(
        createHash('sha256')
          .update(readFileSync(path.join(store, 'inputs', name)))
          .digest('hex'),
      ).toBe(name);
    expect(server.proc.output()).toMatch(/StoreUnavailableError: the store is full \(ENOSPC\)/);

    // Room again: the same request is taken.
    for (const name of inputs) rmSync(path.join(store, 'inputs', name));
    execFileSync('mount', ['-o', 'remount,size=4m', store]);
    const taken = await submitJob(server.base, serveToken, { content: a, style: b }, { size: '32x32', iterations: '5' });
    expect(taken.status).toBe(201);
  });

  it('answers 503 when the store is read-only, and no answer carries a path of the server', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-ro-'));
    const writable = path.join(dir, 'store');
    const store = path.join(dir, 'read-only');
    mkdirSync(writable);
    mkdirSync(store);
    mount(['--bind', writable], store);
    execFileSync('mount', ['-o', 'remount,ro,bind', store]);
    const redis = await startRedis();
    procs.push(redis.proc);
    const server = await startServe(redis.url, store);
    procs.push(server.proc);

    const r = await submitJob(server.base, serveToken, { content: await noisePng(3), style: await noisePng(4) }, { iterations: '5' });
    expect(r).toEqual({ status: 503, body: { error: 'the store is not writable (EROFS)' } });
    expect(JSON.stringify(r.body)).not.toContain(dir);

    // A job a worker failed with a file-system error: its reason is shown without the path.
    const queue = openQueue(redisConnection(redis.url));
    const id = randomUUID();
    const worker = new Worker(
      QUEUE_NAME,
      async () => {
        throw new Error(`ENOSPC: no space left on device, open '${store}/.tmp/123-abc'`);
      },
      { connection: redisConnection(redis.url) },
    );
    try {
      await queue.add('render', { content: 'inputs/x', styles: ['inputs/y'], options: { iterations: '5' } }, { jobId: id });
      await until(
        async () => (await getJson(`${server.base}/api/jobs/${id}`, serveToken)).body.state === 'failed',
        15_000,
        'the job to fail',
      );
      const view = await getJson(`${server.base}/api/jobs/${id}`, serveToken);
      expect(view.body.error).toBe("ENOSPC: no space left on device, open '<path>'");
      const list = await fetch(`${server.base}/api/jobs`, { headers: { authorization: `Bearer ${serveToken}` } });
      expect(await list.text()).not.toContain(dir);
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});

describe('the folder store', () => {
  it('tells a store failure from a missing key, with no path in its message', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-store-'));
    const store = folderStore(path.join(dir, 'store'));
    expect(await store.get('inputs/none')).toBeUndefined();
    // A key that is a folder on disk: the rename over it fails (EISDIR) after the bytes were written.
    mkdirSync(path.join(dir, 'store', 'results', 'x.png'), { recursive: true });
    const e = await store.put('results/x.png', new Uint8Array([2])).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(StoreUnavailableError);
    expect((e as StoreUnavailableError).message).toBe('the store is not answering (EISDIR)');
    expect(readdirSync(path.join(dir, 'store', '.tmp'))).toEqual([]);
  });

  it('sweeps the temporary files a killed writer left, and only old ones', async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'nst-sweep-')), 'store');
    mkdirSync(path.join(dir, '.tmp'), { recursive: true });
    execFileSync('touch', ['-d', '2 days ago', path.join(dir, '.tmp', 'old')]);
    execFileSync('touch', [path.join(dir, '.tmp', 'new')]);
    expect(await sweepTemporaryFiles(dir)).toBe(1);
    expect(readdirSync(path.join(dir, '.tmp'))).toEqual(['new']);
    expect(await sweepTemporaryFiles(path.join(dir, 'none'))).toBe(0);
  });
});
