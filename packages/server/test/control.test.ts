import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { folderStore } from '@nst/server';
import { call, getJson, nstBin, startApi, startCli, startRedis, submitJob, swatch, until, type Proc } from './helpers.js';

// Issue 23: control and true states. The API in this process, a real redis-server and real worker processes
// (the built CLI, the built-in blocks 1-3 weights, one job at a time), stopped with SIGTERM and SIGKILL.
const ready = existsSync(nstBin);
const token = 'control-test-token-0123';
const small = { size: '32x24', 'style-layers': 'conv1_1,conv2_1', 'content-layers': 'conv2_2' };

describe.skipIf(!ready && process.env.CI !== 'true')('control and true states', () => {
  const procs: Proc[] = [];
  let api: Awaited<ReturnType<typeof startApi>>;
  let redisUrl = '';
  let store = '';
  let png: Blob;
  let png2: Blob;
  const workers: Proc[] = [];
  const startWorker = async () => {
    const w = startCli(
      [
        'worker',
        '--store',
        store,
        '--backend',
        'cpu',
        '--max-batch',
        '1',
        '--lock-seconds',
        '3',
        '--checkpoint-every',
        '10',
        '--preview-seconds',
        '1',
      ],
      redisUrl,
      { NST_CACHE_DIR: mkdtempSync(path.join(tmpdir(), 'nst-control-cache-')), NST_WEIGHTS: '' },
    );
    procs.push(w);
    workers.push(w);
    await w.waitFor(/worker ready/, 60_000);
    return w;
  };
  const view = async (id: string) => (await getJson(`${api.base}/api/jobs/${id}`, token)).body;
  const submit = async (fields: Record<string, string>) => {
    const r = await submitJob(api.base, token, { content: png, style: png2 }, { ...small, ...fields });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.id as string;
  };
  const untilState = (id: string, state: string, timeoutMs = 60_000) =>
    until(async () => (await view(id)).state === state, timeoutMs, `job ${id} to be ${state}`);

  beforeAll(async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    redisUrl = redis.url;
    store = path.join(mkdtempSync(path.join(tmpdir(), 'nst-control-')), 'store');
    api = await startApi(redisUrl, { store: folderStore(store), token, eventsEveryMs: 200 });
    [png, png2] = await Promise.all([swatch(1), swatch(3)]);
  });
  afterAll(async () => {
    await api?.close();
    for (const p of procs.reverse()) await p.stop('SIGKILL');
  });

  it('queues with positions by priority, cancels a queued job at once and a running one within 2 s (its worker takes the next), retries', async () => {
    const long = await submit({ iterations: '4000', priority: '9' });
    const later = await submit({ iterations: '20', 'client-ref': 'shot-042' });
    const sooner = await submit({ iterations: '20', priority: '5' });
    const dropped = await submit({ iterations: '20' });
    // No worker yet: all queued, in the order they will run.
    expect((await Promise.all([long, sooner, later, dropped].map(view))).map((v) => [v.state, v.position])).toEqual([
      ['queued', 1],
      ['queued', 2],
      ['queued', 3],
      ['queued', 4],
    ]);
    expect(await view(later)).toMatchObject({ 'client-ref': 'shot-042', priority: 0, owner: 'admin', iteration: 0, started: null });

    // A queued job is cancelled at once, and leaves the queue.
    const cancelled = await call('DELETE', `${api.base}/api/jobs/${dropped}`, token);
    expect(cancelled).toMatchObject({ status: 202, body: { id: dropped, state: 'cancelled' } });
    expect((await view(later)).position).toBe(3);

    const worker = await startWorker();
    await until(
      async () => (await view(long)).state === 'running' && ((await view(long)).iteration as number) > 0,
      60_000,
      'the long job to run',
    );
    const running = await view(long);
    expect(running).toMatchObject({ state: 'running', iterations: 4000 });
    expect(running.worker).toMatch(/-\d+-[0-9a-f]{6}$/);
    expect(running.started).toBeGreaterThan(running.submitted as number);
    // The others wait in the queue, the sooner one first.
    expect([(await view(sooner)).position, (await view(later)).position]).toEqual([1, 2]);
    const { workers: live } = (await getJson(`${api.base}/api/workers`, token)).body as { workers: Record<string, unknown>[] };
    expect(live).toEqual([expect.objectContaining({ id: running.worker, backend: 'cpu', jobs: [long], rendering: [long], gpu: null })]);
    expect(Date.now() - (live[0].heartbeat as number)).toBeLessThan(5000);
    await until(async () => ((await view(long)).eta as number | null) !== null, 10_000, 'an ETA');

    // A running job stops within 2 s of its cancellation, and its worker goes on to the next job.
    const t0 = Date.now();
    expect((await call('DELETE', `${api.base}/api/jobs/${long}`, token)).status).toBe(202);
    await untilState(long, 'cancelled', 5000);
    const stoppedIn = Date.now() - t0;
    process.stdout.write(`control: a running job cancelled and stopped in ${stoppedIn} ms\n`);
    expect(stoppedIn).toBeLessThan(2000);
    expect(worker.output()).toMatch(new RegExp(`job ${long} cancelled`));
    await untilState(sooner, 'done');
    await untilState(later, 'done');
    const [s, l] = await Promise.all([view(sooner), view(later)]);
    expect(s.started as number).toBeLessThan(l.started as number);
    expect(l.finished as number).toBeGreaterThanOrEqual(l.started as number);
    expect((l['loss-history'] as unknown[]).length).toBeGreaterThan(0);
    // Cancelling what is over is refused; a cancelled job can be retried and runs to the end.
    expect(await call('DELETE', `${api.base}/api/jobs/${later}`, token)).toMatchObject({ status: 409, body: { field: 'id' } });
    expect((await call('POST', `${api.base}/api/jobs/${dropped}/retry`, token)).body).toMatchObject({ state: 'queued' });
    await untilState(dropped, 'done');

    // A failed job is retried with its attempts counted afresh (and fails again, for the same reason).
    const bad = await submit({ iterations: '5', 'content-layers': 'conv4_2' });
    await untilState(bad, 'failed');
    expect((await view(bad)).error).toMatch(/^content-layers: layer conv4_2 is not in the weight set/);
    expect((await call('POST', `${api.base}/api/jobs/${bad}/retry`, token)).status).toBe(202);
    await untilState(bad, 'failed');
    expect(await view(bad)).toMatchObject({ attempts: 1 });
    expect(await call('POST', `${api.base}/api/jobs/${later}/retry`, token)).toMatchObject({ status: 409, body: { field: 'id' } });
    const listed = (await getJson(`${api.base}/api/jobs?state=cancelled`, token)).body.jobs as { id: string }[];
    expect(listed.map((j) => j.id)).toEqual([long]);
    await worker.stop();
  }, 180_000);

  it('a job handed back on SIGTERM is queued again (the worker exits within 5 s); one whose worker is killed is stalled, then running on another', async () => {
    const job = await submit({ iterations: '4000' });
    const first = await startWorker();
    await until(async () => ((await view(job)).iteration as number) > 20, 60_000, 'the job to pass a checkpoint');
    const t0 = Date.now();
    await first.stop('SIGTERM');
    const exitedIn = Date.now() - t0;
    process.stdout.write(`control: a worker drained and exited ${exitedIn} ms after SIGTERM\n`);
    expect(exitedIn).toBeLessThan(5000);
    expect(first.output()).toMatch(new RegExp(`job ${job} goes back to the queue`));
    expect(await view(job)).toMatchObject({ state: 'queued', position: 1, worker: null });
    expect((await getJson(`${api.base}/api/workers`, token)).body.workers).toEqual([]);

    const second = await startWorker();
    await until(async () => (await view(job)).state === 'running', 30_000, 'the job to run again');
    await second.waitFor(/resumed .* at iteration [1-9]/, 10_000);
    const secondId = (await view(job)).worker;
    await second.stop('SIGKILL');
    // Stalled within the lock time (3 s) and the heartbeat's life, with no worker alive.
    const t1 = Date.now();
    await untilState(job, 'stalled', 8000);
    const stalledIn = Date.now() - t1;
    process.stdout.write(`control: stalled ${stalledIn} ms after its worker was killed (lock 3 s)\n`);
    expect(stalledIn).toBeLessThan(6000);
    await until(
      async () => ((await getJson(`${api.base}/api/workers`, token)).body.workers as unknown[]).length === 0,
      6000,
      'the dead worker to leave the list',
    );

    await startWorker();
    await until(async () => (await view(job)).state === 'running', 30_000, 'another worker to take the job');
    expect((await view(job)).worker).not.toBe(secondId);
    await call('DELETE', `${api.base}/api/jobs/${job}`, token);
    await untilState(job, 'cancelled', 5000);
  }, 180_000);
});
