/**
 * One job, one pipeline: `nst render`, `nst batch` and an HTTP job on
 * `nst worker` run a job the same way, so they give the same schedule and
 * the same losses; jobs share an engine batch only when every option but
 * their inputs and outputs is equal, and then each gets exactly what it gets
 * alone; a worker checks a job as the render does; a manifest whose jobs
 * would write over each other's files is refused before anything runs.
 * All real: the built CLI, a redis-server, the API server, a worker process.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer, folderStore, openQueue, redisConnection, type RenderQueue } from '@nst/server';
import { available, cliBuilt, jsonLines, newDir, nst, nstAsync, writeTestImage } from '@nst/test-helpers';
import { getJson, startCli, startRedis, submitJob, until, type Proc } from '../packages/server/test/helpers.js';

// The worker renders with the built-in blocks 1-3 (no weights installed); render and batch name the same set.
const engineFlags = ['--weights', 'embedded', '--backend', 'cpu'];
const layers = { 'style-layers': 'conv1_1,conv2_1', 'content-layers': 'conv2_2' };
/** The two jobs of the schedule comparison: explicit scales, and the hq preset (auto scales, L-BFGS). */
const scheduled = {
  scales: { size: '32x24', scales: '16,24', 'scale-iterations': '3,3,2', ...layers },
  hq: { size: '320x240', preset: 'hq', iterations: '2', ...layers },
};
type Schedule = { size: string; iterations: number }[];

describe.runIf(available(cliBuilt, 'the CLI is not built (npm run build)'))('one job, one pipeline', () => {
  const dir = newDir('nst-pipeline-');
  const file = (name: string) => path.join(dir, name);
  const content = file('content.png');
  const style = file('style.png');
  const content2 = file('content2.png');
  beforeAll(async () => {
    await Promise.all([writeTestImage(content, 64, 48, 1), writeTestImage(style, 64, 48, 5), writeTestImage(content2, 64, 48, 2)]);
  });
  const manifest = (name: string, jobs: object[]) => {
    writeFileSync(file(name), jobs.map((j) => JSON.stringify(j)).join('\n') + '\n');
    return file(name);
  };
  const results = (m: string) => jsonLines(readFileSync(`${m}.results.jsonl`, 'utf8'));
  const flagsOf = (options: Record<string, string | number>) => Object.entries(options).flatMap(([k, v]) => [`--${k}`, String(v)]);
  // Asynchronous: the API server of the HTTP tests lives in this process and must keep answering meanwhile.
  const run = (options: Record<string, string | number>, out: string) =>
    nstAsync(['render', '--content', content, '--style', style, '--out', out, '--json', ...engineFlags, ...flagsOf(options)]);
  const render = async (options: Record<string, string | number>, out: string) => {
    const r = await run(options, out);
    expect(r.status, r.stderr).toBe(0);
    return jsonLines(r.stdout).find((l) => l.summary)! as { scales: Schedule; final: { total: number } };
  };

  describe('render, batch and an HTTP job render the same schedule', () => {
    const procs: Proc[] = [];
    let server: ReturnType<typeof createApiServer>;
    let queue: RenderQueue;
    let base = '';
    const token = 'one-pipeline-token-123';
    beforeAll(async () => {
      const redis = await startRedis();
      procs.push(redis.proc);
      const store = path.join(mkdtempSync(path.join(tmpdir(), 'nst-pipeline-store-')), 'store');
      queue = openQueue(redisConnection(redis.url));
      server = createApiServer({ store: folderStore(store), queue, token });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const worker = startCli(['worker', '--store', store, '--backend', 'cpu', '--lock-seconds', '30'], redis.url, {
        NST_CACHE_DIR: mkdtempSync(path.join(tmpdir(), 'nst-pipeline-cache-')),
        NST_WEIGHTS: '',
      });
      procs.push(worker);
      await worker.waitFor(/worker ready: .*; weights: embedded/, 60_000);
    });
    afterAll(async () => {
      server?.closeAllConnections();
      await new Promise((r) => server?.close(r));
      await queue?.close();
      for (const p of procs.reverse()) await p.stop();
    });
    const viaHttp = async (fields: Record<string, string>) => {
      const blob = (f: string) => new Blob([readFileSync(f)]);
      const submitted = await submitJob(base, token, { content: blob(content), style: blob(style) }, fields);
      expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
      let view: Record<string, unknown> = {};
      await until(
        async () => {
          view = (await getJson(`${base}/api/jobs/${submitted.body.id as string}`, token)).body;
          return view.state === 'done' || view.state === 'failed';
        },
        180_000,
        'the HTTP job',
      );
      return view;
    };

    it('explicit scales and the hq preset: the same scales, iterations and final losses on every front end', async () => {
      const m = manifest(
        'scheduled.jsonl',
        Object.entries(scheduled).map(([id, options]) => ({ id, content, style, out: file(`batch-${id}.png`), ...options })),
      );
      const batch = await nstAsync(['batch', m, ...engineFlags, '--json']);
      expect(batch.status, batch.stderr).toBe(0);
      const byId = Object.fromEntries(results(m).map((r) => [r.job, r]));
      for (const [id, options] of Object.entries(scheduled)) {
        const rendered = await render(options, file(`render-${id}.png`));
        const http = await viaHttp(options);
        expect(http.state, String(http.error)).toBe('done');
        expect(rendered.scales.length, id).toBeGreaterThan(1);
        expect(byId[id].scales, id).toEqual(rendered.scales);
        expect(http.scales, id).toEqual(rendered.scales);
        expect((byId[id].losses as { total: number }).total, id).toBe(rendered.final.total);
        expect((http.losses as { total: number }).total, id).toBe(rendered.final.total);
      }
      expect((await render(scheduled.scales, file('again.png'))).scales).toEqual([
        { size: '16x12', iterations: 3 },
        { size: '24x18', iterations: 3 },
        { size: '32x24', iterations: 2 },
      ]);
    });

    it("a job that cannot fit fails at once with the render's message, is not retried, and the worker goes on", async () => {
      // tile off: tile by tile it would fit (and render, slowly).
      const huge = { size: '1024x768', 'style-scale': '16', iterations: '1', tile: 'off', ...layers };
      const refused = await run(huge, file('huge.png'));
      expect(refused.status).toBe(2);
      const message = refused.stderr
        .trim()
        .split('\n')
        .at(-1)!
        .replace(/^nst: --size: /, '');
      expect(message).toMatch(/^1024x768 with style images up to 16384x12288 needs about .* on the cpu backend/);
      const failed = await viaHttp(huge);
      expect(failed.state).toBe('failed');
      expect(failed.attempts).toBe(1);
      // The same estimate and advice; the memory free may differ by a little between the two processes.
      const shape = (m: string) =>
        m.replace(/but [\d.]+ GiB of memory is available; the largest size that fits is about \d+x\d+/, 'but ...');
      expect(shape(String(failed.error))).toBe(shape(`size: ${message}`));
      const next = await viaHttp({ size: '32x24', iterations: '2', ...layers });
      expect(next.state).toBe('done');
    });
  });

  it('packs only jobs whose options all agree, and each line gets exactly what nst render gives it alone', async () => {
    const baseJob = { size: '32x24', iterations: 4, 'save-every': 0, ...layers };
    const variants: Record<string, Record<string, string | number>> = {
      base: {},
      optimizer: { optimizer: 'lbfgs' },
      'bit-depth': { 'bit-depth': 16 },
      'preserve-colors': { 'preserve-colors': 'luminance' },
      scales: { scales: '16', 'scale-iterations': '2,4' },
      init: { init: 'content' },
      'content-layers': { 'content-layers': 'conv1_2' },
    };
    const lines = [
      ...Object.entries(variants).map(([id, extra]) => ({ id, content, style, out: file(`packed-${id}.png`), ...baseJob, ...extra })),
      // Another photo with the base options: it shares the base job's engine batch.
      { id: 'base2', content: content2, style, out: file('packed-base2.png'), ...baseJob },
    ];
    const m = manifest('variants.jsonl', lines);
    const r = nst(['batch', m, ...engineFlags, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const batches = jsonLines(r.stdout)
      .filter((e) => e.event === 'batch')
      .map((e) => e.jobs);
    expect(batches).toContainEqual(['base', 'base2']);
    expect(batches.filter((b) => (b as string[]).length > 1)).toHaveLength(1);
    for (const line of lines) {
      const { id, out, content: c, style: s, ...options } = line;
      const alone = file(`alone-${id}.png`);
      const single = nst(['render', '--content', c, '--style', s, '--out', alone, ...engineFlags, ...flagsOf(options)]);
      expect(single.status, single.stderr).toBe(0);
      expect(readFileSync(out).equals(readFileSync(alone)), id).toBe(true);
    }
    // The comparison can fail: the variants differ from the base job.
    expect(readFileSync(file('packed-base.png')).equals(readFileSync(file('packed-optimizer.png')))).toBe(false);
  });

  it("refuses, before rendering, a manifest in which a job's snapshot or output lands on another job's file, naming both lines", () => {
    const baseJob = { size: '32x24', iterations: 40, 'save-every': 20, ...layers };
    const snapshot = manifest('clash.jsonl', [
      { content, style, out: file('r.png'), ...baseJob },
      // This job's content is where the first one saves its iteration-20 snapshot.
      { content: file('r_20.png'), style, out: file('s.png'), ...baseJob },
    ]);
    writeFileSync(file('r_20.png'), readFileSync(content2));
    const before = readFileSync(file('r_20.png'));
    const r = nst(['batch', snapshot, ...engineFlags]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(
      /^nst: out: line 1 would save an intermediate image over the content image of line 2 \('.*r_20\.png'\)/,
    );
    expect(readFileSync(file('r_20.png')).equals(before)).toBe(true);
    const own = manifest('own.jsonl', [{ content, style, out: content, ...baseJob }]);
    const mine = nst(['batch', own, ...engineFlags]);
    expect(mine.status).toBe(2);
    expect(mine.stderr.trim()).toMatch(/^nst: out: line 1 would write '.*content\.png' over the content image of line 1/);
  });
});
