import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, nstBin, repoRoot, startCli, startRedis, type Proc } from './helpers.js';

// Issue 23: every curl example of the README is run, as written, against a real `nst serve` and `nst worker`
// (Redis, a folder store, the built-in weights). The examples are the README's ```sh blocks that call curl, run
// in order in one bash with `set -euo pipefail`, with NST and TOKEN set as the README says.
const images = path.resolve(repoRoot, '..', 'shared', 'images');
const hasTools = ['bash', 'curl', 'jq'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);
const ready = existsSync(nstBin) && existsSync(path.join(images, 'tubingen.jpg')) && hasTools;

/** The README's shell blocks that call curl, in order. */
function curlExamples(): string[] {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  return [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]).filter((block) => /\bcurl\b/.test(block));
}

describe.skipIf(!ready && process.env.CI !== 'true')('the README curl examples', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
  });

  it('run as written and do what they say', async () => {
    const examples = curlExamples();
    expect(examples.length).toBeGreaterThanOrEqual(3);
    const redis = await startRedis();
    procs.push(redis.proc);
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-readme-'));
    const store = path.join(dir, 'store');
    const token = 'readme-example-token-0123';
    const port = await freePort();
    const serve = startCli(['serve', '--port', String(port), '--store', store], redis.url, { NST_TOKEN: token });
    const worker = startCli(['worker', '--store', store, '--backend', 'cpu', '--checkpoint-every', '10'], redis.url, {
      NST_CACHE_DIR: path.join(dir, 'cache'),
      NST_WEIGHTS: '',
    });
    procs.push(serve, worker);
    await serve.waitFor(/listening on/);
    await worker.waitFor(/worker ready/, 60_000);
    const work = path.join(dir, 'work');
    spawnSync('mkdir', [work]);
    copyFileSync(path.join(images, 'tubingen.jpg'), path.join(work, 'photo.jpg'));
    copyFileSync(path.join(images, 'starry_night.jpg'), path.join(work, 'painting.jpg'));

    const script = ['set -euo pipefail', ...examples.map((block, k) => `echo "== example ${k + 1}"\n${block}`)].join('\n');
    const r = spawnSync('bash', ['-c', script], {
      cwd: work,
      encoding: 'utf8',
      timeout: 240_000,
      env: { ...process.env, NST: `http://127.0.0.1:${port}`, TOKEN: token },
    });
    const context = `${r.stdout}\n${r.stderr}\nworker:\n${worker.output().slice(-2000)}`;
    expect(r.status, context).toBe(0);
    // The cancelled job ran again and finished; its result is there in each format, at the size asked for.
    for (const [file, format] of [
      ['result.png', 'png'],
      ['result.jpg', 'jpeg'],
      ['result.tif', 'tiff'],
    ]) {
      const meta = await sharp(path.join(work, file)).metadata();
      expect([meta.format, Math.max(meta.width!, meta.height!)], file).toEqual([format, 256]);
    }
    expect(r.stdout).toMatch(/"client-ref":"shot-042"/);
    expect(r.stdout).toMatch(/"state":"cancelled"/);
    expect(r.stdout).toMatch(/\{"status":"ok","redis":"ok","store":"ok"\}/);
    expect(r.stdout).toMatch(/^nst_jobs_completed_total 1$/m);
  }, 300_000);
});
