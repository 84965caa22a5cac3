import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { available, cliBuilt, jsonLines, newDir, nst, nstAsync, sharedAvailable, sharedWeights, writeTestImage } from '@nst/test-helpers';

// `nst batch` end to end on the cpu engine: packing, failures alone, the results file, re-runs and resuming.
const weights = sharedAvailable('weights') ? sharedWeights : 'random:4';
const common = { size: '24x16', 'style-layers': 'conv1_1,conv2_1', 'content-layers': 'conv2_2', 'save-every': 0 };

describe.runIf(available(cliBuilt, 'the CLI is not built (npm run build)'))('nst batch', () => {
  const dir = newDir('nst-batch-');
  const file = (name: string) => path.join(dir, name);
  beforeAll(async () => {
    await Promise.all([1, 2, 3, 4].map((k) => writeTestImage(file(`img${k}.png`), 40, 30, k)));
  });
  const manifest = (name: string, jobs: object[]) => {
    writeFileSync(file(name), jobs.map((j) => JSON.stringify(j)).join('\n') + '\n');
    return file(name);
  };
  const results = (m: string) => jsonLines(readFileSync(`${m}.results.jsonl`, 'utf8'));
  const run = (m: string, extra: string[] = []) => nst(['batch', m, '--weights', weights, '--backend', 'cpu', '--json', ...extra]);

  it('packs compatible jobs, fails bad ones alone with their reason, and skips finished outputs on a re-run', async () => {
    const m = manifest('jobs.jsonl', [
      { id: 'a', content: 'img1.png', style: 'img3.png', out: 'out/a.png', iterations: 6, ...common },
      { id: 'b', content: 'img2.png', style: ['img3.png', 'img4.png'], out: 'out/b.png', iterations: 6, ...common },
      { id: 'small', content: 'img2.png', style: 'img4.png', out: 'out/small.png', iterations: 6, ...common, size: '16x12' },
      { id: 'missing', content: 'nope.png', style: 'img3.png', out: 'out/m.png', iterations: 6, ...common },
      { id: 'typo', content: 'img1.png', style: 'img3.png', out: 'out/t.png', iterations: 'six', ...common },
    ]);
    const r = run(m);
    expect(r.status, r.stderr).toBe(1); // some jobs failed
    const events = jsonLines(r.stdout);
    const batches = events.filter((e) => e.event === 'batch').map((e) => e.jobs);
    expect(batches).toEqual([['a', 'b'], ['small']]);
    const byJob = Object.fromEntries(results(m).map((x) => [x.job, x]));
    expect(byJob.missing).toMatchObject({ status: 'failed', error: expect.stringMatching(/^content: no such file '.*nope\.png'$/) });
    expect(byJob.typo).toMatchObject({ status: 'failed', error: expect.stringMatching(/^iterations: 'six' is not a whole number/) });
    for (const id of ['a', 'b', 'small']) {
      expect(byJob[id]).toMatchObject({ status: 'done', iterations: 6 });
      expect((byJob[id].losses as { total: number }).total).toBeGreaterThan(0);
      expect(typeof byJob[id].seconds).toBe('number');
    }
    expect((await sharp(file('out/small.png')).metadata()).width).toBe(16);
    const summary = events.find((e) => e.event === 'summary')!;
    expect(summary).toMatchObject({ done: 3, failed: 2, skipped: 0 });
    expect(summary.imagesPerHour).toBeGreaterThan(0);

    const again = run(m);
    expect(again.status).toBe(1);
    expect(
      results(m)
        .filter((x) => x.status === 'skipped')
        .map((x) => x.job)
        .sort(),
    ).toEqual(['a', 'b', 'small']);
    expect(jsonLines(again.stdout).filter((e) => e.event === 'batch')).toEqual([]);
  });

  it('checkpoints every running job on Ctrl-C and resumes them on the next run', async () => {
    const m = manifest('long.jsonl', [
      { id: 'x', content: 'img1.png', style: 'img4.png', out: 'long/x.png', iterations: 4000, ...common },
      { id: 'y', content: 'img2.png', style: 'img3.png', out: 'long/y.png', iterations: 4000, ...common },
    ]);
    let sent = false;
    const first = await nstAsync(['batch', m, '--weights', weights, '--backend', 'cpu', '--json'], (chunk, child) => {
      // Once both jobs have made some progress (a batch's first progress event comes at iteration 0).
      if (!sent && /"event":"progress".*"iteration":[1-9]/.test(chunk)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    expect(first.status, first.stderr).toBe(130);
    expect(results(m).map((x) => x.status)).toEqual(['interrupted', 'interrupted']);
    // Each job's image so far lies beside its output, never under the output's name.
    for (const id of ['x', 'y']) {
      expect(existsSync(file(`long/${id}.png.ckpt`))).toBe(true);
      expect(existsSync(file(`long/${id}.partial.png`))).toBe(true);
      expect(existsSync(file(`long/${id}.png`))).toBe(false);
    }

    // The re-run resumes both together from where they stopped (fewer iterations left, so the test stays short).
    const stoppedAt = jsonLines(readFileSync(`${m}.results.jsonl`, 'utf8'))[0].iterations as number;
    expect(stoppedAt).toBeGreaterThan(0);
    manifest('long.jsonl', [
      { id: 'x', content: 'img1.png', style: 'img4.png', out: 'long/x.png', iterations: stoppedAt + 3, ...common },
      { id: 'y', content: 'img2.png', style: 'img3.png', out: 'long/y.png', iterations: stoppedAt + 3, ...common },
    ]);
    const second = run(m);
    expect(second.status, second.stderr).toBe(0);
    const batch = jsonLines(second.stdout).find((e) => e.event === 'batch')!;
    expect(batch).toMatchObject({ jobs: ['x', 'y'], startIteration: stoppedAt });
    expect(results(m).map((x) => [x.status, x.iterations])).toEqual([
      ['done', stoppedAt + 3],
      ['done', stoppedAt + 3],
    ]);
    for (const id of ['x', 'y']) {
      expect(existsSync(file(`long/${id}.png.ckpt`))).toBe(false);
      expect(existsSync(file(`long/${id}.partial.png`))).toBe(false);
      expect(existsSync(file(`long/${id}.png`))).toBe(true);
    }
  });

  it('reads CSV manifests', () => {
    writeFileSync(
      file('jobs.csv'),
      `id,content,style,out,iterations,size,style-layers,content-layers,save-every\nc1,img1.png,"img2.png,img3.png",csv/c1.png,3,24x16,"conv1_1,conv2_1",conv2_2,0\n`,
    );
    const r = run(file('jobs.csv'));
    expect(r.status, r.stderr).toBe(0);
    expect(results(file('jobs.csv'))).toMatchObject([{ job: 'c1', status: 'done', iterations: 3 }]);
    expect(existsSync(file('csv/c1.png'))).toBe(true);
  });
});
