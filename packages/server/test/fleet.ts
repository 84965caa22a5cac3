/** What the tests of many workers share: submitting a grid of jobs, killing a worker mid-job, waiting, and checking the results. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { expect } from 'vitest';
import { getJson, startCli, submitJob, until, type Proc } from './helpers.js';

/** How the workers of these tests run: small batches, frequent checkpoints, a short lock (a lost job moves on quickly). */
export const FLEET_WORKER_FLAGS = [
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

export interface FleetJob {
  readonly id: string;
  readonly content: string;
  readonly style: string;
}

/** Submits one job per content and style (files in `images`) with `options`. */
export async function submitGrid(
  base: string,
  token: string,
  images: string,
  grid: { contents: readonly string[]; styles: readonly string[] },
  options: Record<string, string>,
): Promise<FleetJob[]> {
  const jobs: FleetJob[] = [];
  const blob = (f: string) => new Blob([readFileSync(path.join(images, f))]);
  for (const content of grid.contents)
    for (const style of grid.styles) {
      const r = await submitJob(base, token, { content: blob(content), style: blob(style) }, options);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      jobs.push({ id: r.body.id as string, content, style });
    }
  return jobs;
}

/** Waits until `worker`'s latest batch (one it started after `batchesBefore`) holds a job for which `midJob` says yes. */
export async function untilMidJob(
  worker: Proc,
  batchesBefore: number,
  midJob: (id: string) => Promise<boolean>,
  what: string,
): Promise<void> {
  await until(
    async () => {
      const lines = [...worker.output().matchAll(/^batch of \d+(?: from iteration \d+)?: (.+)$/gm)];
      if (lines.length < Math.max(1, batchesBefore)) return false;
      for (const id of lines.at(-1)![1].split(', ')) if (await midJob(id)) return true;
      return false;
    },
    90_000,
    what,
  );
}

export const batchesSoFar = (worker: Proc) => (worker.output().match(/^batch of/gm) ?? []).length;

/** Waits until every job is done; a failed one fails the test with the workers' logs. */
export async function untilAllDone(base: string, token: string, jobs: readonly FleetJob[], workers: readonly Proc[], timeoutMs: number) {
  await until(
    async () => {
      const views = await Promise.all(jobs.map(async (j) => (await getJson(`${base}/api/jobs/${j.id}`, token)).body));
      const failed = views.find((v) => v.state === 'failed');
      if (failed) throw new Error(`job ${failed.id} failed: ${failed.error}\n${workers.map((w) => w.output()).join('\n---\n')}`);
      return views.every((v) => v.state === 'done');
    },
    timeoutMs,
    `all ${jobs.length} jobs to be done`,
  );
}

/** The workers resumed a job from a checkpoint, and wrote each result exactly once. */
export function expectResumedAndWrittenOnce(workers: readonly Proc[], jobs: readonly FleetJob[]): void {
  const logs = workers.map((w) => w.output()).join('\n');
  expect(logs).toMatch(/resumed .* at iteration [1-9]\d*/);
  for (const j of jobs) expect(logs.split('\n').filter((l) => l === `result ${j.id} written`)).toHaveLength(1);
}

/**
 * Renders every job again with `nst batch` (one process, no worker lost) and compares each result the API
 * serves with it: within a mean of 2 levels of its own reference, and far from another job's (so the
 * comparison can tell jobs apart). Returns how many were pixel-identical and the largest mean difference.
 */
export async function compareWithBatch(o: {
  dir: string;
  jobs: readonly FleetJob[];
  images: string;
  options: Record<string, string>;
  batchArgs: readonly string[];
  redisUrl: string;
  env?: Record<string, string>;
  procs: Proc[];
  base: string;
  token: string;
  size: readonly [number, number];
}): Promise<{ identical: number; largest: number }> {
  const manifest = path.join(o.dir, 'reference.jsonl');
  const line = (j: FleetJob) =>
    JSON.stringify({
      id: j.id,
      content: path.join(o.images, j.content),
      style: path.join(o.images, j.style),
      out: `ref/${j.id}.png`,
      'save-every': 0,
      ...o.options,
    });
  writeFileSync(manifest, o.jobs.map(line).join('\n'));
  const ref = startCli(['batch', manifest, ...o.batchArgs], o.redisUrl, o.env);
  o.procs.push(ref);
  await ref.waitFor(new RegExp(`${o.jobs.length} done, 0 failed`), 180_000);
  const pixels = (file: string) => sharp(file).raw().toBuffer();
  const meanDiff = (a: Buffer, b: Buffer) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
  let identical = 0;
  let largest = 0;
  for (const [k, j] of o.jobs.entries()) {
    const res = await fetch(`${o.base}/api/jobs/${j.id}/result`, { headers: { authorization: `Bearer ${o.token}` } });
    expect(res.status).toBe(200);
    const got = Buffer.from(await res.arrayBuffer());
    const meta = await sharp(got).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', ...o.size]);
    const [mine, reference, other] = await Promise.all([
      sharp(got).raw().toBuffer(),
      pixels(path.join(o.dir, 'ref', `${j.id}.png`)),
      pixels(path.join(o.dir, 'ref', `${o.jobs[(k + 1) % o.jobs.length].id}.png`)),
    ]);
    if (mine.equals(reference)) identical++;
    largest = Math.max(largest, meanDiff(mine, reference));
    expect(meanDiff(mine, reference), j.id).toBeLessThan(2);
    expect(meanDiff(mine, other)).toBeGreaterThan(10);
  }
  return { identical, largest };
}
