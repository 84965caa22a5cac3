/**
 * `nst render` on a machine with no weights installed: it renders with the
 * built-in VGG-19 blocks 1-3 and their own loss layers, says so in one line
 * with the way to the full network, and a real stylisation happens (the
 * style loss falls many times over). The example's own images are the inputs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { cliBuilt, jsonLines, nst, repoRoot, tempDir } from '@nst/test-helpers';

const content = path.join(repoRoot, 'examples', 'images', 'tubingen.jpg');
const style = path.join(repoRoot, 'examples', 'images', 'starry_night.jpg');
const noWeights = { NST_CACHE_DIR: tempDir('nst-no-weights-').path, NST_WEIGHTS: '' };

describe.runIf(cliBuilt)('nst render with no weights installed', () => {
  const dir = tempDir('nst-embedded-').path;
  const args = (out: string, iterations = 40) => [
    'render',
    '-c',
    content,
    '-s',
    style,
    '-o',
    path.join(dir, out),
    '--size',
    '64x48',
    '--iterations',
    String(iterations),
    '--print-every',
    '40',
    '--save-every',
    '0',
    '--json',
    '--verbose',
  ];

  it('uses the built-in blocks 1-3 with their own layers, says how to get the full network, and stylises', async () => {
    const r = nst(args('built-in.png'), noWeights);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^weights: no full VGG-19 installed, using the built-in blocks 1-3; the full network gives the notebook's result: nst weights fetch/m,
    );
    expect(r.stderr).toMatch(/^layers: content conv3_2; style conv1_1, conv2_1, conv3_1 \(the weight set's own, where none were named\)$/m);
    expect(r.stderr).toMatch(/^weights: embedded \(safetensors, 8 conv layers, caffe-bgr\)$/m);
    const reports = jsonLines(r.stdout).filter((l) => typeof l.iteration === 'number');
    const [first, last] = [reports[0], reports.at(-1)!];
    expect(last.iteration).toBe(40);
    expect(Number(first.style) / Number(last.style)).toBeGreaterThan(5);
    const meta = await sharp(path.join(dir, 'built-in.png')).metadata();
    expect([meta.width, meta.height]).toEqual([64, 48]);
  });

  it('keeps the layers the user names and fills only the others', () => {
    const r = nst([...args('named.png', 1), '--content-layers', 'conv2_2'], noWeights);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^layers: content conv2_2; style conv1_1, conv2_1, conv3_1 /m);
  });

  it('an explicit --weights or NST_WEIGHTS wins over the built-in set', () => {
    const explicit = nst(
      [...args('random.png', 1), '--weights', 'random:3', '--style-layers', 'conv1_1', '--content-layers', 'conv1_2'],
      noWeights,
    );
    expect(explicit.status, explicit.stderr).toBe(0);
    expect(explicit.stderr).not.toMatch(/built-in|^layers:/m);
    expect(explicit.stderr).toMatch(/^weights: random:3 /m);
    const env = nst([...args('env.png', 1), '--style-layers', 'conv1_1', '--content-layers', 'conv1_2'], {
      ...noWeights,
      NST_WEIGHTS: 'random:4',
    });
    expect(env.status, env.stderr).toBe(0);
    expect(env.stderr).toMatch(/^weights: random:4 /m);
  });

  it('nst batch with no weights installed: the built-in set, and its layers for jobs that name none', async () => {
    const jobs = path.join(dir, 'jobs.jsonl');
    const job = (id: string, extra: Record<string, string>) =>
      JSON.stringify({ id, content, style, out: path.join(dir, `batch-${id}.png`), size: '64x48', iterations: '5', ...extra });
    writeFileSync(jobs, [job('own-layers', {}), job('named', { 'style-layers': 'conv1_1', 'content-layers': 'conv2_2' })].join('\n'));
    const r = nst(['batch', jobs], noWeights);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/no full VGG-19 installed, using the built-in blocks 1-3/);
    const results = readFileSync(`${jobs}.results.jsonl`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(
      results.map((x) => [x.job, x.status]),
      JSON.stringify(results),
    ).toEqual([
      ['own-layers', 'done'],
      ['named', 'done'],
    ]);
    for (const id of ['own-layers', 'named']) {
      const meta = await sharp(path.join(dir, `batch-${id}.png`)).metadata();
      expect([meta.width, meta.height]).toEqual([64, 48]);
    }
  });

  it('nst weights info lists the built-in set', () => {
    const r = nst(['weights', 'info'], noWeights);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^no full VGG-19 in the cache .*nst weights fetch/m);
    expect(r.stdout).toMatch(/^source: +embedded$/m);
    expect(r.stdout).toMatch(/^default layers: +content conv3_2; style conv1_1, conv2_1, conv3_1 \(equal weights\)$/m);
    expect(r.stdout).toMatch(/^licence: +CC BY 4\.0/m);
  });
});
