import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { folderStore, inputKey, openQueue, redisConnection, resultKey, type RenderQueue } from '@nst/server';
import { canMount, nstBin, startCli, startRedis, until, type Proc } from './helpers.js';

// Issue 21, the worker's side: a read-only store failed a running job for good within 4 s and lost its
// progress, and a full store failed queued jobs after 3 attempts. Now a running job keeps rendering (its
// checkpoints and previews wait), a finished result waits for the store, and a job that cannot be stored goes
// back to the queue, delayed, with its attempts untouched. Real file systems (a tmpfs: mounting needs root,
// elsewhere these tests are skipped with the reason), a real redis-server and a real worker process.

/**
 * Remounts the store read-only. The kernel refuses ("mount point is busy")
 * while a file there is open for writing: the worker's checkpoint being
 * written at that moment. Tried again until it lands, for at most 10 s.
 */
async function remountReadOnly(store: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      execFileSync('mount', ['-o', 'remount,ro', store], { stdio: 'pipe' });
      return;
    } catch (e) {
      if (Date.now() > deadline || !/busy/.test(String((e as { stderr?: Buffer }).stderr))) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe.skipIf((!existsSync(nstBin) || !canMount) && process.env.CI !== 'true')(
  'a worker on a failing store (needs root to mount)',
  () => {
    const procs: Proc[] = [];
    const mounts: string[] = [];
    let queue: RenderQueue | undefined;
    afterAll(async () => {
      await queue?.close();
      for (const p of procs.reverse()) await p.stop();
      for (const m of mounts.reverse()) spawnSync('umount', [m]);
    });

    /** A store on its own tmpfs, a redis-server, a queue and a worker process. */
    const setup = async (workerFlags: string[]) => {
      const store = path.join(mkdtempSync(path.join(tmpdir(), 'nst-worker-store-')), 'store');
      mkdirSync(store);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', store]);
      mounts.push(store);
      const redis = await startRedis();
      procs.push(redis.proc);
      queue = openQueue(redisConnection(redis.url));
      const worker = startCli(['worker', '--store', store, '--backend', 'cpu', '--checkpoint-every', '2', ...workerFlags], redis.url, {
        NST_CACHE_DIR: mkdtempSync(path.join(tmpdir(), 'nst-worker-store-cache-')),
        NST_WEIGHTS: '',
      });
      procs.push(worker);
      await worker.waitFor(/worker ready/, 60_000);
      const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 90, b: 40 } } })
        .png()
        .toBuffer();
      const s = folderStore(store);
      await s.putOnce(inputKey(png), png);
      const add = (iterations: number) =>
        queue!.add(
          'render',
          {
            content: inputKey(png),
            styles: [inputKey(png)],
            options: { size: '32x24', iterations: String(iterations), styleLayers: 'conv1_1', contentLayers: 'conv1_2' },
          },
          { attempts: 3, backoff: { type: 'exponential', delay: 1000 } },
        );
      return { store, worker, add, s };
    };

    it('keeps a running job going while the store is read-only, and stores its result once it is writable again', async () => {
      const { store, worker, add, s } = await setup([]);
      const job = await add(3000);
      await until(
        async () => (((await queue!.getJob(job.id!))?.progress as { iteration?: number } | undefined)?.iteration ?? 0) > 4,
        60_000,
        'the render to start',
      );
      await remountReadOnly(store);
      // The old worker failed the job within 4 s: it must still be running after 6.
      await new Promise((r) => setTimeout(r, 6000));
      const during = (await queue!.getJob(job.id!))!;
      expect(await during.getState()).toBe('active');
      expect(during.attemptsMade).toBe(0);
      expect(worker.output()).toMatch(/store: the store is not writable \(EROFS\): a checkpoint not written; the render goes on/);
      execFileSync('mount', ['-o', 'remount,rw', store]);
      await until(async () => (await queue!.getJob(job.id!))!.getState().then((st) => st === 'completed'), 120_000, 'the job to finish');
      const done = (await queue!.getJob(job.id!))!;
      expect(done.returnvalue.iterations).toBe(3000);
      expect((await s.get(resultKey(job.id!)))?.length).toBeGreaterThan(0);
    });

    it('hands a job whose result the store cannot take back to the queue, delayed, with its attempts untouched', async () => {
      const { store, worker, add, s } = await setup(['--store-wait-seconds', '2']);
      // Fill the store: the job renders (its checkpoints cannot be written) but its result cannot be stored.
      writeFileSync(path.join(store, 'filler'), Buffer.alloc(4 * 2 ** 20 - 64 * 1024));
      execFileSync('mount', ['-o', 'remount,size=4m', store]);
      try {
        writeFileSync(path.join(store, 'filler2'), Buffer.alloc(256 * 1024));
      } catch {
        // full, as wanted
      }
      const job = await add(6);
      await until(
        async () => (await queue!.getJob(job.id!))!.getState().then((st) => st === 'delayed'),
        60_000,
        'the job to be handed back',
      );
      expect(worker.output()).toMatch(/store: the store is full \(ENOSPC\): trying again in 1 s/);
      // The log line is written before the job moves; its pipe may reach this process a moment after Redis does.
      await worker.waitFor(new RegExp(`job ${job.id} goes back to the queue`), 5000);
      const delayed = (await queue!.getJob(job.id!))!;
      expect(delayed.attemptsMade).toBe(0);
      expect(delayed.failedReason).toBeFalsy();
      // Room again: the job comes round and finishes.
      rmSync(path.join(store, 'filler'), { force: true });
      rmSync(path.join(store, 'filler2'), { force: true });
      await delayed.promote();
      await until(async () => (await queue!.getJob(job.id!))!.getState().then((st) => st === 'completed'), 60_000, 'the job to finish');
      expect((await s.get(resultKey(job.id!)))?.length).toBeGreaterThan(0);
    });
  },
);
