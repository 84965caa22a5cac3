import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { folderStore, parseTokensFile } from '@nst/server';
import { call, getJson, nstBin, startApi, startCli, startRedis, submitJob, swatch, until, type Proc } from './helpers.js';

// Issue 23: per-user access, the job list's data, result formats, health and metrics. The API in this process
// with a tokens file's users, a real redis-server and one real worker process.
const ready = existsSync(nstBin);
const users = parseTokensFile(
  ['# name token [admin]', 'ana ana-token-0123456789', 'ben ben-token-0123456789', 'ops ops-token-0123456789 admin', ''].join('\n'),
);
const [ana, ben, ops] = users.map((u) => u.token);
const small = { size: '32x24', iterations: '10', 'style-layers': 'conv1_1,conv2_1', 'content-layers': 'conv2_2' };

/** Parses Prometheus' text format strictly enough to fail on anything malformed: name{labels} value per sample. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(
      line,
    );
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    samples.set(m[1], Number(m[2]));
  }
  return samples;
}

describe.skipIf(!ready && process.env.CI !== 'true')('per-user access, the job list, formats, health and metrics', () => {
  const procs: Proc[] = [];
  let api: Awaited<ReturnType<typeof startApi>>;
  let png: Blob;
  let png2: Blob;
  beforeAll(async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const store = path.join(mkdtempSync(path.join(tmpdir(), 'nst-access-')), 'store');
    api = await startApi(redis.url, { store: folderStore(store), users, limits: { queuedPerUser: 2, outputPixels: 40 * 30 } });
    const worker = startCli(['worker', '--store', store, '--backend', 'cpu', '--lock-seconds', '5'], redis.url, {
      NST_CACHE_DIR: mkdtempSync(path.join(tmpdir(), 'nst-access-cache-')),
      NST_WEIGHTS: '',
    });
    procs.push(worker);
    [png, png2] = await Promise.all([swatch(2), swatch(5)]);
    await worker.waitFor(/worker ready/, 60_000);
  });
  afterAll(async () => {
    await api?.close();
    for (const p of procs.reverse()) await p.stop();
  });

  it('shows each user only their own jobs (an admin all), limits queued jobs per user, keeps names and the client-ref, serves formats and thumbnails', async () => {
    const form = new FormData();
    form.append('content', png, 'harbour at dusk.png');
    form.append('style', png2, 'C:\\paintings\\waves.png');
    for (const [k, v] of Object.entries({ ...small, 'client-ref': 'ana/7' })) form.append(k, v);
    const res = await fetch(`${api.base}/api/jobs`, { method: 'POST', body: form, headers: { authorization: `Bearer ${ana}` } });
    expect(res.status).toBe(201);
    const mine = ((await res.json()) as { id: string }).id;
    const theirs = (await submitJob(api.base, ben, { content: png2, style: png }, small)).body.id as string;

    expect((await getJson(`${api.base}/api/jobs/${theirs}`, ana)).status).toBe(404);
    expect((await call('DELETE', `${api.base}/api/jobs/${theirs}`, ana)).status).toBe(404);
    expect((await getJson(`${api.base}/api/jobs`, ana)).body.jobs).toEqual([expect.objectContaining({ id: mine, owner: 'ana' })]);
    expect(((await getJson(`${api.base}/api/jobs`, ops)).body.jobs as { id: string }[]).map((j) => j.id).sort()).toEqual(
      [mine, theirs].sort(),
    );

    await until(async () => (await getJson(`${api.base}/api/jobs/${mine}`, ana)).body.state === 'done', 60_000, 'the job');
    const view = (await getJson(`${api.base}/api/jobs/${mine}`, ana)).body;
    expect(view).toMatchObject({
      'client-ref': 'ana/7',
      names: { content: 'harbour at dusk.png', styles: ['waves.png'] },
      settings: { size: '32x24', iterations: '10', styleLayers: 'conv1_1,conv2_1', contentLayers: 'conv2_2' },
    });
    for (const key of ['submitted', 'started', 'finished']) expect(typeof view[key], key).toBe('number');
    expect((await getJson(`${api.base}/api/jobs?state=done`, ana)).body.jobs).toEqual([expect.objectContaining({ id: mine })]);
    expect((await getJson(`${api.base}/api/jobs?state=running`, ana)).body.jobs).toEqual([]);
    expect(await getJson(`${api.base}/api/jobs?state=lost`, ana)).toMatchObject({ status: 400, body: { field: 'state' } });

    for (const [format, type] of [
      ['png', 'png'],
      ['jpeg', 'jpeg'],
      ['tiff', 'tiff'],
    ]) {
      const r = await fetch(`${api.base}/api/jobs/${mine}/result?format=${format}`, { headers: { authorization: `Bearer ${ana}` } });
      const meta = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
      expect([r.status, meta.format, meta.width, meta.height]).toEqual([200, type, 32, 24]);
    }
    expect(await getJson(`${api.base}/api/jobs/${mine}/result?format=gif`, ana)).toMatchObject({ status: 400, body: { field: 'format' } });
    for (const of of ['content', 'style', 'result']) {
      const r = await fetch(`${api.base}/api/jobs/${mine}/thumbnail?of=${of}`, { headers: { authorization: `Bearer ${ana}` } });
      expect([r.status, (await sharp(Buffer.from(await r.arrayBuffer())).metadata()).format], of).toEqual([200, 'jpeg']);
    }

    // The per-user limit of queued jobs (2 here): a third is refused; another user is not held back by it.
    // The worker is kept busy with a long job, so that the others stay queued (held for a batch or in the queue).
    const busy = (await submitJob(api.base, ana, { content: png, style: png2 }, { ...small, iterations: '5000' })).body.id as string;
    await until(async () => (await getJson(`${api.base}/api/jobs/${busy}`, ana)).body.state === 'running', 30_000, 'the long job to run');
    const slow = { ...small, iterations: '3000' };
    const queued = [];
    for (let k = 0; k < 3; k++) queued.push(await submitJob(api.base, ben, { content: png, style: png2 }, slow));
    expect(queued.map((r) => r.status)).toEqual([201, 201, 429]);
    expect(queued[2].body.error).toMatch(/jobs queued, the most this server takes from one user/);
    expect((await submitJob(api.base, ana, { content: png, style: png2 }, small)).status).toBe(201);
    // The pixel cap is the server's setting, named by the field.
    expect(await submitJob(api.base, ana, { content: png, style: png2 }, { ...small, size: '64x48' })).toMatchObject({
      status: 413,
      body: { field: 'size', error: 'size: 64x48 is more than 1200 pixels' },
    });
    expect(await submitJob(api.base, ana, { content: png, style: png2 }, { ...small, priority: '11' })).toMatchObject({
      status: 400,
      body: { field: 'priority' },
    });
    for (const id of [busy, ...queued.slice(0, 2).map((r) => r.body.id)]) await call('DELETE', `${api.base}/api/jobs/${id}`, ops);
  }, 120_000);

  it('answers /healthz without a token, and /metrics in Prometheus text, to admins only, counting the jobs run', async () => {
    expect(await (await fetch(`${api.base}/healthz`)).json()).toEqual({ status: 'ok', redis: 'ok', store: 'ok' });
    expect((await fetch(`${api.base}/metrics`, { headers: { authorization: `Bearer ${ana}` } })).status).toBe(403);
    // A job that fails for good, for the failures by code (the blocks 1-3 weights have no conv4_2).
    const bad = (await submitJob(api.base, ana, { content: png, style: png2 }, { ...small, 'content-layers': 'conv4_2' })).body.id;
    await until(async () => (await getJson(`${api.base}/api/jobs/${bad}`, ana)).body.state === 'failed', 30_000, 'the bad job to fail');
    // Every job over (the last test's small job may still be rendering when the queue is empty).
    await until(
      async () =>
        ((await getJson(`${api.base}/api/jobs?limit=500`, ops)).body.jobs as { state: string }[]).every((j) =>
          ['done', 'failed', 'cancelled'].includes(j.state),
        ),
      60_000,
      'every job to end',
    );
    const res = await fetch(`${api.base}/metrics`, { headers: { authorization: `Bearer ${ops}` } });
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = parsePrometheus(await res.text());
    const listed = (await getJson(`${api.base}/api/jobs?limit=500`, ops)).body.jobs as { state: string }[];
    const count = (state: string) => listed.filter((j) => j.state === state).length;
    expect(m.get('nst_jobs_completed_total')).toBe(count('done'));
    expect(m.get('nst_jobs{state="done"}')).toBe(count('done'));
    expect(m.get('nst_jobs_cancelled_total')).toBe(count('cancelled'));
    expect(m.get('nst_jobs{state="cancelled"}')).toBe(count('cancelled'));
    const failures = [...m].filter(([k]) => k.startsWith('nst_job_failures_total{'));
    expect(failures.reduce((a, [, v]) => a + v, 0)).toBe(count('failed'));
    expect(count('failed')).toBe(1);
    expect(m.get('nst_queue_depth')).toBe(0);
    expect(m.get('nst_workers')).toBe(1);
    expect([...m.keys()].some((k) => k.startsWith('nst_worker_images_per_hour{'))).toBe(true);
    expect(m.get('nst_store_errors_total{process="server"}')).toBe(0);
    expect(count('done')).toBe(3);
  }, 90_000);
});
