import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointKey, isStoreUnavailable, resultKey, s3Store } from '@nst/server';
import {
  batchesSoFar,
  compareWithBatch,
  FLEET_WORKER_FLAGS,
  expectResumedAndWrittenOnce,
  submitGrid,
  untilAllDone,
  untilMidJob,
} from './fleet.js';
import { freePort, nstBin, repoRoot, s3Client, startCli, startRedis, startS3, type Proc } from './helpers.js';

// Issue 23: workers on machines with no shared disk. The server and three workers reach only Redis and a real
// S3-protocol server (s3rver, its own process, on loopback); each worker has its own temporary folder and
// cache (TMPDIR, NST_CACHE_DIR) and renders with the weights built into the package. One worker is killed with
// SIGKILL twice, mid-job with a checkpoint in the bucket, and started again.
const images = path.resolve(repoRoot, '..', 'shared', 'images');
const ready = existsSync(nstBin) && existsSync(path.join(images, 'tubingen.jpg'));
const options = { size: '64x48', fit: 'fill', iterations: '60', 'style-layers': 'conv1_1,conv2_1,conv3_1', 'content-layers': 'conv3_2' };
const contents = ['tubingen.jpg', 'golden_gate.jpg', 'hoovertowernight.jpg', 'starry_night.jpg', 'the_scream.jpg'];
const styles = ['starry_night.jpg', 'the_scream.jpg', 'shipwreck.jpg', 'tubingen.jpg'];

describe.skipIf(!ready && process.env.CI !== 'true')('three workers with no shared folder, on an S3 store', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop('SIGKILL');
  });

  it('finishes 20 jobs with correct results, each written once, while one worker is killed twice', async () => {
    const s3 = await startS3();
    procs.push(s3.proc);
    const redis = await startRedis();
    procs.push(redis.proc);
    const storeUrl = 's3://nst/studio';
    const store = s3Store(storeUrl, { client: s3Client(s3.url) });
    const port = await freePort();
    const token = 's3-workers-token-0123';
    const server = startCli(['serve', '--port', String(port), '--store', storeUrl], redis.url, { ...s3.env, NST_TOKEN: token });
    procs.push(server);
    const workers: Proc[] = [];
    const startWorker = () => {
      // Nothing of this worker's is anyone else's: its own scratch, cache and weights.
      const own = mkdtempSync(path.join(tmpdir(), 'nst-machine-'));
      const w = startCli(['worker', '--store', storeUrl, ...FLEET_WORKER_FLAGS], redis.url, {
        ...s3.env,
        TMPDIR: own,
        NST_CACHE_DIR: path.join(own, 'cache'),
        NST_WEIGHTS: '',
      });
      procs.push(w);
      workers.push(w);
      return w;
    };
    for (let k = 0; k < 3; k++) startWorker();
    await server.waitFor(/listening on/);
    await Promise.all(workers.map((w) => w.waitFor(/worker ready/, 60_000)));
    const base = `http://127.0.0.1:${port}`;

    const jobs = await submitGrid(base, token, images, { contents, styles }, options);

    // Kill the first worker twice while it renders a job whose checkpoint is in the bucket, and start it again.
    let victim = workers[0];
    // The test's own look into the bucket: a read that s3rver drops under load (ECONNRESET) is "not yet", asked again.
    const midJob = async (id: string) => {
      try {
        return !!(await store.get(checkpointKey(id))) && !(await store.get(resultKey(id)));
      } catch (e) {
        if (isStoreUnavailable(e)) return false;
        throw e;
      }
    };
    for (let kill = 0; kill < 2; kill++) {
      await untilMidJob(victim, batchesSoFar(victim), midJob, `the worker to be mid-job (kill ${kill + 1})`);
      await victim.stop('SIGKILL');
      victim = startWorker();
      await victim.waitFor(/worker ready/, 60_000);
    }
    await untilAllDone(base, token, jobs, workers, 240_000);

    // Each result was written exactly once, by one worker, and is in the bucket.
    expectResumedAndWrittenOnce(workers, jobs);
    const inBucket = [];
    for await (const b of store.list('results')) inBucket.push(b.key);
    expect(inBucket.sort()).toEqual(jobs.map((j) => resultKey(j.id)).sort());
    const left = [];
    for await (const b of store.list('checkpoints')) left.push(b.key);
    expect(left).toEqual([]);

    // Correct: each result is what one worker alone renders for the job (`nst batch`, same weights, no loss).
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-s3-reference-'));
    const { identical, largest } = await compareWithBatch({
      dir,
      jobs,
      images,
      options,
      batchArgs: ['--backend', 'cpu', '--max-batch', '4'],
      redisUrl: redis.url,
      env: { NST_CACHE_DIR: path.join(dir, 'cache'), NST_WEIGHTS: '' },
      procs,
      base,
      token,
      size: [64, 48],
    });
    process.stdout.write(
      `s3 workers: ${identical} of 20 results pixel-identical to the single-worker render, the others within a mean of ${largest.toFixed(3)} levels\n`,
    );
  }, 540_000);
});
