import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend } from '@nst/core';
import { folderStore, inputKey, openQueue, redisConnection, startWorker, type RenderQueue } from '@nst/server';
import { loadWeights } from '@nst/weights';
import { startRedis, until, type Proc } from './helpers.js';

// A job whose engine keeps failing is retried a limited number of times, then ends as failed with its reason.
// The backend is one whose sessions cannot start (as a GPU that has failed); queue, store and worker are real.
describe('retries', () => {
  const procs: Proc[] = [];
  let queue: RenderQueue | undefined;
  let close: (() => Promise<void>) | undefined;
  afterAll(async () => {
    await close?.();
    await queue?.close();
    for (const p of procs) await p.stop();
  });

  it('gives up after the attempts the job allows and keeps the last reason', async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const connection = redisConnection(redis.url);
    const store = folderStore(path.join(mkdtempSync(path.join(tmpdir(), 'nst-retry-')), 'store'));
    const weights = await loadWeights('random:2');
    let sessions = 0;
    const broken: Backend = {
      name: 'broken',
      detail: 'a backend whose sessions fail',
      estimateMemory: () => 0,
      loadWeights: async () => undefined,
      createSession: async () => {
        sessions++;
        throw new Error(`device lost (session ${sessions})`);
      },
      dispose: () => undefined,
    };
    const worker = startWorker({
      store,
      connection,
      engine: { backend: broken, weights },
      limits: { maxBatch: 2, memoryBytes: 2 ** 30 },
      scratchDir: mkdtempSync(path.join(tmpdir(), 'nst-retry-scratch-')),
      checkpointEvery: 5,
      lockMs: 5000,
      previewEveryMs: 1000,
      log: () => undefined,
    });
    close = worker.close;
    const png = await sharp({ create: { width: 16, height: 12, channels: 3, background: 'teal' } })
      .png()
      .toBuffer();
    await store.putOnce(inputKey(png), png);
    queue = openQueue(connection);
    const job = await queue.add(
      'render',
      { content: inputKey(png), styles: [inputKey(png)], options: { size: '16x12', iterations: '3' } },
      { jobId: '0b7c0c1e-0000-4000-8000-000000000001', attempts: 3, backoff: { type: 'fixed', delay: 100 } },
    );
    await until(async () => (await job.getState()) === 'failed', 30_000, 'the job to fail');
    const done = (await queue.getJob(job.id!))!;
    expect(await done.getState()).toBe('failed');
    expect(done.attemptsMade).toBe(3);
    expect(sessions).toBe(3);
    expect(done.failedReason).toBe('device lost (session 3)');
  });
});
