import { existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  batchesSoFar,
  compareWithBatch,
  FLEET_WORKER_FLAGS,
  expectResumedAndWrittenOnce,
  submitGrid,
  untilAllDone,
  untilMidJob,
} from './fleet.js';
import { freePort, nstBin, repoRoot, startCli, startRedis, type Proc } from './helpers.js';

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
    const workerArgs = ['worker', '--store', store, '-w', weights, ...FLEET_WORKER_FLAGS];
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

    const jobs = await submitGrid(base, token, images, { contents, styles }, options);

    // Kill the other worker three times while it is mid-batch with a checkpoint in the store, and restart it.
    let victim = workers[0];
    const midJob = async (id: string) =>
      existsSync(path.join(store, 'checkpoints', `${id}.ckpt`)) && !existsSync(path.join(store, 'results', `${id}.png`));
    for (let kill = 0; kill < 3; kill++) {
      await untilMidJob(victim, batchesSoFar(victim), midJob, `worker to be mid-job (kill ${kill + 1})`);
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
    await untilAllDone(base, token, jobs, workers, 150_000).finally(() => clearInterval(watcher));
    watchResults();
    expect(firstSeen.size).toBe(12);
    void steady;

    expectResumedAndWrittenOnce(workers, jobs);
    // Nothing else lies in the results folder.
    expect(readdirSync(path.join(store, 'results')).sort()).toEqual(jobs.map((j) => `${j.id}.png`).sort());
    // A finished job's checkpoint is gone once its result is stored.
    expect(readdirSync(path.join(store, 'checkpoints'))).toEqual([]);

    // Correct: each result matches the same job rendered by `nst batch` with no worker lost.
    await compareWithBatch({
      dir,
      jobs,
      images,
      options,
      batchArgs: ['-w', weights, '--backend', 'cpu', '--max-batch', '4'],
      redisUrl: redis.url,
      procs,
      base,
      token,
      size: [64, 48],
    });
  }, 300_000);
});
