import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, getJson, nstBin, repoRoot, startCli, startRedis, submitJob, until, type Proc } from './helpers.js';

// Two workers behind a real redis-server; one is killed with SIGKILL three times mid-job and restarted.
const shared = path.resolve(repoRoot, '..', 'shared');
const weights = path.join(shared, 'weights', 'vgg19-keras-blocks1-3');
const images = path.join(shared, 'images');
const ready =
  existsSync(path.join(weights, 'model.json')) &&
  existsSync(nstBin) &&
  existsSync(path.join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));
const options = { size: '64x48', fit: 'fill', iterations: '60', 'style-layers': 'conv1_1,conv2_1,conv3_1', 'content-layers': 'conv3_2' };
const contents = ['tubingen.jpg', 'golden_gate.jpg', 'hoovertowernight.jpg'];
const styles = ['starry_night.jpg', 'the_scream.jpg', 'shipwreck.jpg', 'tubingen.jpg'];

describe.skipIf(!ready && process.env.CI !== 'true')('lost workers', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop('SIGKILL');
  });

  it('loses nothing when a worker is killed three times: 12 results, each correct and written once', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-lost-'));
    const store = path.join(dir, 'store');
    const redis = await startRedis();
    procs.push(redis.proc);
    const port = await freePort();
    const token = 'lost-workers-token';
    const server = startCli(['serve', '--port', String(port), '--store', store, '--token', token], redis.url);
    procs.push(server);
    const workerArgs = [
      'worker',
      '--store',
      store,
      '-w',
      weights,
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
    ];
    const workers: Proc[] = [];
    const startWorker = () => {
      const w = startCli(workerArgs, redis.url);
      procs.push(w);
      workers.push(w);
      return w;
    };
    startWorker();
    const steady = startWorker(); // never killed
    await server.waitFor(/listening on/);
    await Promise.all(workers.map((w) => w.waitFor(/worker ready/)));
    const base = `http://127.0.0.1:${port}`;

    const jobs: { id: string; content: string; style: string }[] = [];
    for (const content of contents)
      for (const style of styles) {
        const blob = (f: string) => new Blob([readFileSync(path.join(images, f))]);
        const r = await submitJob(base, token, { content: blob(content), style: blob(style) }, options);
        expect(r.status, JSON.stringify(r.body)).toBe(201);
        jobs.push({ id: r.body.id as string, content, style });
      }

    // Kill the other worker three times while it is mid-batch with a checkpoint in the store, and restart it.
    let victim = workers[0];
    for (let kill = 0; kill < 3; kill++) {
      const batches = (victim.output().match(/^batch of/gm) ?? []).length;
      await until(
        async () => {
          const running = /^batch of \d+(?: from iteration \d+)?: (.+)$/gm;
          let m: RegExpExecArray | null;
          let ids: string[] = [];
          let seen = 0;
          while ((m = running.exec(victim.output()))) if (++seen > batches - 1) ids = m[1].split(', ');
          return ids.some(
            (id) => existsSync(path.join(store, 'checkpoints', `${id}.ckpt`)) && !existsSync(path.join(store, 'results', `${id}.png`)),
          );
        },
        60_000,
        `worker to be mid-job (kill ${kill + 1})`,
      );
      await victim.stop('SIGKILL');
      victim = startWorker();
      await victim.waitFor(/worker ready/);
    }

    // Each result file, once it exists, must stay the same file (same inode, same time): never replaced by a later attempt.
    const firstSeen = new Map<string, string>();
    const watchResults = () => {
      for (const j of jobs) {
        const file = path.join(store, 'results', `${j.id}.png`);
        if (!existsSync(file)) continue;
        const st = statSync(file);
        const identity = `${st.ino}:${st.mtimeMs}:${st.size}`;
        if (!firstSeen.has(j.id)) firstSeen.set(j.id, identity);
        else expect(identity, `result of ${j.id} was replaced`).toBe(firstSeen.get(j.id));
      }
    };
    const watcher = setInterval(watchResults, 100);
    await until(
      async () => {
        const views = await Promise.all(jobs.map(async (j) => (await getJson(`${base}/api/jobs/${j.id}`, token)).body));
        const failed = views.find((v) => v.state === 'failed');
        if (failed) throw new Error(`job ${failed.id} failed: ${failed.error}\n${workers.map((w) => w.output()).join('\n---\n')}`);
        return views.every((v) => v.state === 'done');
      },
      150_000,
      'all 12 jobs to be done',
    ).finally(() => clearInterval(watcher));
    watchResults();
    expect(firstSeen.size).toBe(12);
    void steady;

    const logs = workers.map((w) => w.output()).join('\n');
    // Someone resumed a job from a checkpoint rather than from the start.
    expect(logs).toMatch(/resumed .* at iteration [1-9]\d*/);
    // Each result was written exactly once, and nothing else lies in the results folder.
    for (const j of jobs) expect(logs.split('\n').filter((l) => l === `result ${j.id} written`)).toHaveLength(1);
    expect(readdirSync(path.join(store, 'results')).sort()).toEqual(jobs.map((j) => `${j.id}.png`).sort());
    // A finished job's checkpoint is gone once its result is stored.
    expect(readdirSync(path.join(store, 'checkpoints'))).toEqual([]);

    // Correct: each result matches the same job rendered by `nst batch` with no worker lost.
    const manifest = path.join(dir, 'reference.jsonl');
    writeFileSync(
      manifest,
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
    const ref = startCli(['batch', manifest, '-w', weights, '--backend', 'cpu', '--max-batch', '4'], redis.url);
    procs.push(ref);
    await ref.waitFor(/12 done, 0 failed/, 120_000);
    const pixels = (file: string) => sharp(file).raw().toBuffer();
    const meanDiff = (a: Buffer, b: Buffer) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
    for (const [k, j] of jobs.entries()) {
      const res = await fetch(`${base}/api/jobs/${j.id}/result`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      const got = Buffer.from(await res.arrayBuffer());
      const meta = await sharp(got).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
      const [mine, reference, other] = await Promise.all([
        sharp(got).raw().toBuffer(),
        pixels(path.join(dir, 'ref', `${j.id}.png`)),
        pixels(path.join(dir, 'ref', `${jobs[(k + 1) % jobs.length].id}.png`)),
      ]);
      expect(meanDiff(mine, reference)).toBeLessThan(2);
      expect(meanDiff(mine, other)).toBeGreaterThan(10); // the comparison can tell jobs apart
    }
  }, 300_000);
});
