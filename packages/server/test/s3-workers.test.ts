import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointKey, resultKey, s3Store } from '@nst/server';
import { freePort, getJson, nstBin, repoRoot, startCli, startRedis, s3Client, startS3, submitJob, until, type Proc } from './helpers.js';

// Issue 23: workers on machines with no shared disk. The server and three workers reach only Redis and a real
// S3-protocol server (s3rver, its own process, on loopback); each worker has its own temporary folder and
// cache (TMPDIR, NST_CACHE_DIR) and renders with the weights built into the package. One worker is killed with
// SIGKILL twice, mid-job with a checkpoint in the bucket, and started again.
const images = path.resolve(repoRoot, '..', 'shared', 'images');
const ready = existsSync(nstBin) && existsSync(path.join(images, 'tubingen.jpg'));
const options = { size: '64x48', iterations: '60', 'style-layers': 'conv1_1,conv2_1,conv3_1', 'content-layers': 'conv3_2' };
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
      const w = startCli(
        [
          'worker',
          '--store',
          storeUrl,
          '--backend',
          'cpu',
          '--max-batch',
          '4',
          '--checkpoint-every',
          '10',
          '--lock-seconds',
          '3',
          '--preview-seconds',
          '2',
        ],
        redis.url,
        { ...s3.env, TMPDIR: own, NST_CACHE_DIR: path.join(own, 'cache'), NST_WEIGHTS: '' },
      );
      procs.push(w);
      workers.push(w);
      return w;
    };
    for (let k = 0; k < 3; k++) startWorker();
    await server.waitFor(/listening on/);
    await Promise.all(workers.map((w) => w.waitFor(/worker ready/, 60_000)));
    const base = `http://127.0.0.1:${port}`;

    const jobs: { id: string; content: string; style: string }[] = [];
    for (const content of contents)
      for (const style of styles) {
        const blob = (f: string) => new Blob([readFileSync(path.join(images, f))]);
        const r = await submitJob(base, token, { content: blob(content), style: blob(style) }, options);
        expect(r.status, JSON.stringify(r.body)).toBe(201);
        jobs.push({ id: r.body.id as string, content, style });
      }

    // Kill the first worker twice while it renders a job whose checkpoint is in the bucket, and start it again.
    let victim = workers[0];
    for (let kill = 0; kill < 2; kill++) {
      const batches = (victim.output().match(/^batch of/gm) ?? []).length;
      await until(
        async () => {
          const lines = [...victim.output().matchAll(/^batch of \d+(?: from iteration \d+)?: (.+)$/gm)];
          if (lines.length < Math.max(1, batches)) return false;
          const ids = lines.at(-1)![1].split(', ');
          for (const id of ids) if ((await store.get(checkpointKey(id))) && !(await store.get(resultKey(id)))) return true;
          return false;
        },
        90_000,
        `the worker to be mid-job (kill ${kill + 1})`,
      );
      await victim.stop('SIGKILL');
      victim = startWorker();
      await victim.waitFor(/worker ready/, 60_000);
    }

    await until(
      async () => {
        const views = await Promise.all(jobs.map(async (j) => (await getJson(`${base}/api/jobs/${j.id}`, token)).body));
        const failed = views.find((v) => v.state === 'failed');
        if (failed) throw new Error(`job ${failed.id} failed: ${failed.error}\n${workers.map((w) => w.output()).join('\n---\n')}`);
        return views.every((v) => v.state === 'done');
      },
      240_000,
      'all 20 jobs to be done',
    );

    const logs = workers.map((w) => w.output()).join('\n');
    expect(logs).toMatch(/resumed .* at iteration [1-9]\d*/);
    // Each result was written exactly once, by one worker, and is in the bucket.
    for (const j of jobs) expect(logs.split('\n').filter((l) => l === `result ${j.id} written`)).toHaveLength(1);
    const inBucket = [];
    for await (const b of store.list('results')) inBucket.push(b.key);
    expect(inBucket.sort()).toEqual(jobs.map((j) => resultKey(j.id)).sort());
    const left = [];
    for await (const b of store.list('checkpoints')) left.push(b.key);
    expect(left).toEqual([]);

    // Correct: each result is what one worker alone renders for the job (`nst batch`, same weights, no loss).
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-s3-reference-'));
    writeFileSync(
      path.join(dir, 'reference.jsonl'),
      jobs
        .map((j) =>
          JSON.stringify({
            id: j.id,
            content: path.join(images, j.content),
            style: path.join(images, j.style),
            out: `ref/${j.id}.png`,
            'save-every': 0,
            ...options,
          }),
        )
        .join('\n'),
    );
    const ref = startCli(['batch', path.join(dir, 'reference.jsonl'), '--backend', 'cpu', '--max-batch', '4'], redis.url, {
      NST_CACHE_DIR: path.join(dir, 'cache'),
      NST_WEIGHTS: '',
    });
    procs.push(ref);
    await ref.waitFor(/20 done, 0 failed/, 180_000);
    const meanDiff = (a: Buffer, b: Buffer) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
    let identical = 0;
    let largest = 0;
    for (const [k, j] of jobs.entries()) {
      const res = await fetch(`${base}/api/jobs/${j.id}/result`, { headers: { authorization: `Bearer ${token}` } });
      const got = Buffer.from(await res.arrayBuffer());
      const [mine, reference, other] = await Promise.all([
        sharp(got).raw().toBuffer(),
        sharp(path.join(dir, 'ref', `${j.id}.png`))
          .raw()
          .toBuffer(),
        sharp(path.join(dir, 'ref', `${jobs[(k + 1) % jobs.length].id}.png`))
          .raw()
          .toBuffer(),
      ]);
      if (mine.equals(reference)) identical++;
      largest = Math.max(largest, meanDiff(mine, reference));
      expect(meanDiff(mine, reference), j.id).toBeLessThan(2);
      expect(meanDiff(mine, other)).toBeGreaterThan(10); // the comparison can tell jobs apart
    }
    process.stdout.write(
      `s3 workers: ${identical} of 20 results pixel-identical to the single-worker render, the others within a mean of ${largest.toFixed(3)} levels\n`,
    );
  }, 540_000);
});
