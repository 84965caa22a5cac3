/**
 * `nst render`'s flags, one by one, end to end through the built CLI: each
 * test would fail if its flag were ignored. Small renders (32x24, a few
 * iterations) on a four-layer random weight set written here, so that each
 * run takes about a second. The last test checks that every flag of the
 * README's `nst render` table is covered by one of these tests (or one of
 * test/cli.test.ts) and that the table and `nst render --help` list the same
 * flags.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { PREPROCESSING, type Preprocessing } from '@nst/core';
import { loadNativeAddon } from '@nst/native';
import { OUTPUT_EXTENSIONS } from '@nst/job';
import { randomWeights, writeSafetensors } from '@nst/weights';
import {
  available,
  cliBuilt as built,
  jsonLines,
  newDir,
  nst,
  nstAsync,
  repoRoot,
  sharedImages,
  sharedWeights,
  writeTestImage,
} from '@nst/test-helpers';

const cliBuilt = available(built, 'packages/cli/dist is not built (run `npm run build`)');
// Under CI the native cpu engine must be built (the build is strict there); elsewhere tfjs stands in.
const backend = available(loadNativeAddon().ok, 'the native addon is not built: the flag tests run on tfjs') ? 'cpu' : 'tfjs';
const nativeCpu = backend === 'cpu';
// Two style layers and a content layer after the first pooling: conv1_1 .. conv2_2 is all the network needed.
const LIGHT = ['--style-layers', 'conv1_1,conv2_1', '--content-layers', 'conv2_2'];

/** Flags that take several values (each occurrence adds one). */
const REPEATABLE = new Set(['--content', '--style']);

/**
 * `base` with `extra` appended, less base's single-valued flags that `extra`
 * gives again: nst refuses such a flag given twice with different values.
 */
function withFlags(base: readonly string[], extra: readonly string[]): string[] {
  const given = new Set(extra.filter((a) => a.startsWith('--') && !REPEATABLE.has(a)));
  const kept: string[] = [];
  for (let i = 0; i < base.length; i++) {
    if (!given.has(base[i])) kept.push(base[i]);
    else if (i + 1 < base.length && !base[i + 1].startsWith('--')) i++; // its value goes too
  }
  return [...kept, ...extra];
}

interface Rendered {
  reports: Record<string, number>[];
  summary: Record<string, unknown>;
  stderr: string;
}

describe.runIf(cliBuilt)('nst render flags (end to end)', () => {
  const dir = newDir('nst-flags-');
  const file = (name: string) => path.join(dir, name);
  let content = '';
  let content2 = '';
  let style = '';
  let style2 = '';
  let caffeWeights = '';
  let torchWeights = '';

  /** conv1_1 .. conv2_2 of random:1 with the given preprocessing recorded, as a safetensors file. */
  async function smallWeights(name: string, pre: Preprocessing): Promise<string> {
    const layers = randomWeights(1).layers.slice(0, 4);
    const tensors = layers.flatMap((l) => [
      { name: `${l.name}.kernel`, shape: [3, 3, l.inChannels, l.outChannels], data: l.kernel },
      { name: `${l.name}.bias`, shape: [l.outChannels], data: l.bias },
    ]);
    await writeSafetensors(file(name), tensors, { preprocessing: JSON.stringify(pre) });
    return file(name);
  }

  beforeAll(async () => {
    content = await writeTestImage(file('content.png'), 64, 48, 1);
    content2 = await writeTestImage(file('content2.png'), 64, 48, 2);
    style = await writeTestImage(file('style.png'), 64, 48, 5);
    style2 = await writeTestImage(file('style2.png'), 48, 64, 9); // portrait: --style-scale keeps its aspect
    caffeWeights = await smallWeights('caffe.safetensors', PREPROCESSING.caffeBgr);
    torchWeights = await smallWeights('torchvision.safetensors', PREPROCESSING.torchvision);
  });

  /** `nst render` on the small set at 32x24; `inputs`: the --content and --style flags (default: content, style). */
  function renderArgs(out: string, inputs = ['--content', content, '--style', style]): string[] {
    return [
      'render',
      ...inputs,
      '--out',
      out,
      '--weights',
      caffeWeights,
      ...LIGHT,
      '--size',
      '32x24',
      '--save-every',
      '0',
      '--print-every',
      '1',
      '--backend',
      backend,
      '--json',
    ];
  }

  /** A render that must succeed (`args` replace renderArgs' flags of the same name): its JSON reports and summary. */
  function render(args: string[], out: string, inputs?: string[]): Rendered {
    const r = nst(withFlags(renderArgs(out, inputs), args));
    expect(r.status, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    return {
      reports: lines.filter((l) => !l.summary) as Record<string, number>[],
      summary: lines.find((l) => l.summary) ?? {},
      stderr: r.stderr,
    };
  }

  async function pixels(file: string): Promise<{ data: Buffer; width: number; height: number }> {
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  }

  const maxDiff = (a: Buffer, b: Buffer) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

  it('--out writes every documented format, chosen by the extension', async () => {
    const formats: Record<string, string> = {
      '.png': 'png',
      '.jpg': 'jpeg',
      '.jpeg': 'jpeg',
      '.webp': 'webp',
      '.tif': 'tiff',
      '.tiff': 'tiff',
      '.avif': 'heif',
    };
    expect(Object.keys(formats).sort()).toEqual([...OUTPUT_EXTENSIONS].sort());
    for (const ext of OUTPUT_EXTENSIONS) {
      const out = file(`format${ext}`);
      render(['--iterations', '0'], out);
      const meta = await sharp(out).metadata();
      expect(meta.format, ext).toBe(formats[ext]);
      expect([meta.width, meta.height]).toEqual([32, 24]);
    }
  });

  it('--size N sets the longest side and keeps the content aspect', async () => {
    const out = file('size-n.png');
    const r = render(['--iterations', '0', '--size', '40'], out);
    expect(r.summary.size).toBe('40x30');
    const p = await pixels(out);
    expect([p.width, p.height]).toEqual([40, 30]);
  });

  it('--alpha, --beta and --tv-weight weight the reported total', () => {
    const r = render(['--iterations', '0', '--alpha', '3', '--beta', '7', '--tv-weight', '0.5'], file('weights.png'));
    const [l] = r.reports;
    expect(l.tv).toBeGreaterThan(0);
    expect(l.style).toBeGreaterThan(0);
    expect(l.content).toBeGreaterThan(0);
    expect(rel(l.total, 3 * l.content + 7 * l.style + 0.5 * l.tv)).toBeLessThan(1e-6);
  });

  it('--pooling max changes what the network sees after the first pooling', () => {
    const avg = render(['--iterations', '0', '--pooling', 'avg'], file('avg.png')).reports[0];
    const max = render(['--iterations', '0', '--pooling', 'max'], file('max.png')).reports[0];
    // The style on conv1_1 is before any pooling: the same; conv2_1 and conv2_2 are after it.
    expect(rel(max.content, avg.content)).toBeGreaterThan(1e-3);
    expect(rel(max.style, avg.style)).toBeGreaterThan(1e-3);
  });

  it('--init FILE with 0 iterations returns that image; --init content and --noise-ratio 0 return the content', async () => {
    const init = await writeTestImage(file('init.png'), 32, 24, 7);
    render(['--iterations', '0', '--init', init], file('init-out.png'));
    expect((await pixels(file('init-out.png'))).data.equals((await pixels(init)).data)).toBe(true);

    render(['--iterations', '0', '--init', 'content'], file('init-content.png'));
    render(['--iterations', '0', '--init', 'noise', '--noise-ratio', '0'], file('init-ratio0.png'));
    render(['--iterations', '0', '--init', 'noise'], file('init-noise.png'));
    const [fromContent, ratio0, noisy] = await Promise.all(
      ['init-content.png', 'init-ratio0.png', 'init-noise.png'].map((f) => pixels(file(f))),
    );
    expect(maxDiff(ratio0.data, fromContent.data)).toBe(0);
    // The default, in the mean-subtracted space: 0.6 * U(-20, 20) + 0.4 * content, i.e. in pixels
    // 0.4 * content + 0.6 * the mean pixel, plus up to 12 levels of noise.
    const meanRgb = [...PREPROCESSING.caffeBgr.mean].reverse();
    const mixed = Buffer.from(fromContent.data.map((v, i) => Math.round(0.4 * v + 0.6 * meanRgb[i % 3])));
    expect(maxDiff(noisy.data, mixed)).toBeGreaterThan(8);
    expect(maxDiff(noisy.data, mixed)).toBeLessThanOrEqual(13);
  });

  it('--style-blend-weights 1,0 equals the first style alone, 0,1 the second', () => {
    const args = ['--iterations', '3', '--init', 'content'];
    const first = render([...args], file('blend-first.png')).reports;
    const second = render([...args, '--style', style2], file('blend-second.png')).reports; // the later --style adds a second
    const secondAlone = render(args, file('only-second.png'), ['--content', content, '--style', style2]).reports;
    const blend10 = render([...args, '--style', style2, '--style-blend-weights', '1,0'], file('blend-10.png')).reports;
    const blend01 = render([...args, '--style', style2, '--style-blend-weights', '0,1'], file('blend-01.png')).reports;
    expect(first.length).toBe(4);
    for (let i = 0; i < first.length; i++) {
      expect(rel(blend10[i].style, first[i].style), `1,0 at iteration ${i}`).toBeLessThan(1e-5);
      expect(rel(blend01[i].style, secondAlone[i].style), `0,1 at iteration ${i}`).toBeLessThan(1e-5);
    }
    // The two styles differ, and the equal blend is neither.
    expect(rel(first[0].style, secondAlone[0].style)).toBeGreaterThan(0.05);
    expect(rel(second[0].style, first[0].style)).toBeGreaterThan(0.01);
    expect(rel(second[0].style, secondAlone[0].style)).toBeGreaterThan(0.01);
  });

  it('--style-scale resizes the style to that share of the output, keeping its aspect', async () => {
    // Output 32x24, scale 0.5: the portrait 48x64 style becomes 12x16. The same style already at 12x16
    // (sharp's lanczos3, as the loader resizes) gives the same style loss; without the flag it is 32x24.
    const small = file('style2-12x16.png');
    await sharp(style2).resize(12, 16, { fit: 'fill', kernel: 'lanczos3' }).toFile(small);
    const run = (s: string, extra: string[], out: string) =>
      render(['--iterations', '0', '--init', 'content', ...extra], file(out), ['--content', content, '--style', s]).reports[0].style;
    const scaled = run(style2, ['--style-scale', '0.5'], 'scaled.png');
    const preResized = run(small, ['--style-scale', '0.5'], 'pre-resized.png');
    const unscaled = run(style2, [], 'unscaled.png');
    expect(rel(scaled, preResized)).toBeLessThan(1e-3);
    expect(rel(scaled, unscaled)).toBeGreaterThan(0.05);
  });

  it('several --content render one job each, in one engine batch: each exactly as its own single render', async () => {
    const batchDir = file('batch');
    const { summary } = render(['--iterations', '3', '--seed', '5'], batchDir, [
      '--content',
      content,
      '--content',
      content2,
      '--style',
      style,
    ]);
    expect(summary.batch).toBe(2);
    expect(summary.output).toEqual([path.join(batchDir, 'content.png'), path.join(batchDir, 'content2.png')]);
    render(['--iterations', '3', '--seed', '5'], file('single2.png'), ['--content', content2, '--style', style]);
    const [batch2, single2, batch1] = await Promise.all([
      pixels(path.join(batchDir, 'content2.png')),
      pixels(file('single2.png')),
      pixels(path.join(batchDir, 'content.png')),
    ]);
    expect([batch2.width, batch2.height]).toEqual([32, 24]);
    expect(maxDiff(batch2.data, single2.data)).toBe(0);
    expect(maxDiff(batch1.data, batch2.data)).toBeGreaterThan(20); // two different pictures
    // Two contents with the same name would write one file.
    const clash = nst([
      'render',
      '--content',
      content,
      '--content',
      path.join(path.dirname(content), 'sub', path.basename(content)),
      '--style',
      style,
      '--out',
      file('clash'),
    ]);
    expect(clash.status).toBe(2);
    expect(clash.stderr).toMatch(/^nst: --content: two content images would both be written to '.*content\.png': rename one$/m);
  });

  it('torchvision weights: the noise and --lr are in pixel levels (the first Adam step moves each pixel by lr levels)', async () => {
    // Noise alone (--init random): U(-20, 20) levels around the torchvision mean pixel, whatever the units.
    render(['--weights', torchWeights, '--iterations', '0', '--init', 'random'], file('tv-noise.png'));
    const noise = await pixels(file('tv-noise.png'));
    const mean = PREPROCESSING.torchvision.mean.map((m) => m * 255);
    let spread = 0;
    noise.data.forEach((v, i) => (spread = Math.max(spread, Math.abs(v - mean[i % 3]))));
    expect(spread).toBeLessThanOrEqual(21);
    expect(spread).toBeGreaterThan(15);

    // One Adam step of lr 3 from the content: m/sqrt(v) is +-1, so each pixel moves by 3 levels (either set's units).
    for (const [name, weights] of [
      ['torchvision', torchWeights],
      ['caffe', caffeWeights],
    ]) {
      const at = (n: number) => file(`${name}-lr-${n}.png`);
      render(['--weights', weights, '--iterations', '0', '--init', 'content'], at(0));
      render(['--weights', weights, '--iterations', '1', '--init', 'content', '--lr', '3'], at(1));
      const [p0, p1] = await Promise.all([pixels(at(0)), pixels(at(1))]);
      let inside = 0;
      let moved3 = 0;
      p0.data.forEach((v, i) => {
        if (v < 4 || v > 251) return; // clipped at 0 or 255 after the step
        inside++;
        if (Math.abs(p1.data[i] - v) === 3) moved3++;
      });
      expect(inside, name).toBeGreaterThan(1000);
      expect(moved3 / inside, name).toBeGreaterThan(0.9);
    }
  });

  it('--checkpoint-every writes <out>.ckpt at its multiples; --resume continues there and refuses a different job', async () => {
    const out = file('ckpt.png');
    const args = [...renderArgs(out), '--checkpoint-every', '4'];
    // Stop the process (SIGSTOP) once it has reported iteration 5, read what it reported, then kill it
    // (SIGKILL: no checkpoint on the way out, so the file is the periodic one).
    let stopped = false;
    let last = -1;
    const run = nstAsync([...args, '--iterations', '100000'], (chunk, child) => {
      for (const m of chunk.matchAll(/"iteration":(\d+)/g)) last = Math.max(last, Number(m[1]));
      if (!stopped && last >= 5) {
        stopped = true;
        child.kill('SIGSTOP');
        setTimeout(() => child.kill('SIGKILL'), 500);
      }
    });
    const killed = await run;
    expect(killed.status).toBeNull(); // killed
    expect(existsSync(`${out}.ckpt`)).toBe(true);
    expect(last).toBeGreaterThanOrEqual(5);

    const other = nst([...args, '--iterations', String(last + 8), '--resume', '--alpha', '11']);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/^nst: --resume: checkpoint '.*ckpt\.png\.ckpt' belongs to a different job/m);
    expect(existsSync(`${out}.ckpt`)).toBe(true);

    const resumed = nst([...args, '--iterations', String(last + 8), '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    const at = Number(/resumed from .*ckpt\.png\.ckpt at iteration (\d+)/.exec(resumed.stderr)?.[1]);
    // Written after the update that reaches a multiple of 4; the last report seen was `last` or one before the file.
    expect(at % 4).toBe(0);
    expect([4 * Math.floor(last / 4), 4 * Math.floor((last + 1) / 4)]).toContain(at);
    expect((jsonLines(resumed.stdout)[0] as Record<string, number>).iteration).toBe(at);
  });

  it('--yes downloads the default weights when none are installed (without it: the built-in set renders, no download)', async () => {
    const requests: string[] = [];
    const server = createServer((req, res) => {
      requests.push(req.url ?? '');
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const env = {
        NST_WEIGHTS_MIRROR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        NST_CACHE_DIR: file('empty-cache'),
        NST_WEIGHTS: '',
      };
      const base = ['render', '--content', content, '--style', style, '--out', file('yes.png'), '--size', '32x24', '--iterations', '0'];
      // Without --yes nothing is downloaded: the built-in blocks 1-3 render, saying how to get the full network.
      const no = await nstAsync(base, undefined, env);
      expect(no.status, no.stderr).toBe(0);
      expect(no.stdout).toMatch(/; weights: no full VGG-19 installed, using the built-in blocks 1-3 .*nst weights fetch/);
      expect(requests).toEqual([]);
      const yes = await nstAsync([...base, '--yes'], undefined, env);
      expect(yes.status).not.toBe(0); // the mirror has nothing: the download fails, with one line
      expect(yes.stderr.trim().split('\n').at(-1)).toMatch(/^nst: /);
      expect(requests.length).toBeGreaterThan(0);
    } finally {
      server.close();
    }
  });

  it('--debug adds the stack trace to an error', () => {
    const args = ['render', '--content', content, '--style', style, '--out', file('debug.png'), '--size', '12by7'];
    const plain = nst(args);
    expect(plain.status).toBe(2);
    expect(plain.stderr.trim().split('\n')).toHaveLength(1);
    const debug = nst([...args, '--debug']);
    expect(debug.status).toBe(2);
    expect(debug.stderr.split('\n')[0]).toBe(plain.stderr.trim());
    expect(debug.stderr).toMatch(/\n\s+at /);
  });

  it.runIf(nativeCpu)(
    '--precision on the cpu backend: nst backends and the render name the instruction set and the precision; auto is fp32, bf16 where asked for',
    () => {
      // Forced features (NST_CPU_FEATURES), so that every machine checks every case; the engine names what it forced.
      const line = (features: string, precision: string) =>
        new RegExp(`^cpu \\(oneDNN \\d+\\.\\d+\\.\\d+, \\d+ threads, [\\w.-]+ ${precision}; NST_CPU_FEATURES=${features}\\)$`);
      const backends = (features: string) =>
        nst(['backends'], { NST_CPU_FEATURES: features })
          .stdout.split('\n')
          .find((l) => l.startsWith('cpu '))
          ?.replace(/^cpu\s+yes\s+/, '');
      const render = (out: string, features: string, precision: string) =>
        nst(withFlags(renderArgs(file(out)), ['--backend', 'cpu', '--precision', precision, '--iterations', '3']), {
          NST_CPU_FEATURES: features,
        });
      // The render's first line: 'rendering WxH, N iterations on <what runs>; weights: ...'.
      const firstLine = (r: { stderr: string }) => /^rendering .* on (.*); weights: /.exec(r.stderr.split('\n')[0])?.[1] ?? r.stderr;
      const final = (r: { stdout: string }) => (jsonLines(r.stdout).find((l) => l.summary)!.final as Record<string, number>).total;

      // No native bf16: auto is fp32, in nst backends and in the render's first line.
      expect(backends('none')).toMatch(line('none', 'fp32'));
      const fp32 = render('cpu-fp32.png', 'none', 'auto');
      expect(fp32.status).toBe(0);
      expect(firstLine(fp32)).toMatch(line('none', 'fp32'));
      // An explicit bf16 there: one line, the --precision error naming the missing instructions.
      const refused = render('cpu-refused.png', 'none', 'bf16');
      expect(refused.status).toBe(2);
      expect(refused.stderr.trim().split('\n')).toEqual([
        expect.stringMatching(
          /^nst: --precision: cpu: bf16 needs native bf16 instructions, AMX-BF16 \(amx_bf16\) or AVX512-BF16 \(avx512_bf16\)/,
        ),
      ]);

      // With native bf16 (forced): auto stays fp32 (native/src/engine.h says why), the same render; bf16 when asked for.
      for (const features of ['avx512_bf16', 'amx']) {
        expect(backends(features)).toMatch(line(features, 'fp32'));
        const auto = render(`cpu-auto-${features}.png`, features, 'auto');
        expect(firstLine(auto)).toMatch(line(features, 'fp32'));
        expect(final(auto)).toBe(final(fp32));
        const bf16 = render(`cpu-bf16-${features}.png`, features, 'bf16');
        if (bf16.status !== 0) {
          // Below AVX-512 oneDNN has no bf16 convolution at all, not even emulated: the one-line refusal.
          expect(bf16.stderr.trim().split('\n')).toEqual([
            expect.stringMatching(/^nst: --precision: cpu: bf16: oneDNN \S+ has no bf16 convolution/),
          ]);
          continue;
        }
        expect(firstLine(bf16)).toMatch(line(features, 'bf16'));
        // The precision reaches the engine: bf16 rounds, so its losses differ from fp32's (and stay close).
        expect(final(bf16)).not.toBe(final(fp32));
        expect(Math.abs(final(bf16) / final(fp32) - 1)).toBeLessThan(2e-2);
      }
    },
  );

  it('--precision and --gpu reach the cuda backend (without a GPU: only their values are checked)', () => {
    const gpu = existsSync('/dev/nvidia0');
    expect.assertions(gpu ? 6 : 4);
    if (gpu) {
      // The engine runs the arithmetic asked for (its description names it); one it lacks (bf16) and a GPU index
      // that does not exist are refused in one line.
      const fp32 = nst(withFlags(renderArgs(file('fp32.png')), ['--backend', 'cuda', '--precision', 'fp32', '--iterations', '5']));
      const tf32 = nst(withFlags(renderArgs(file('tf32.png')), ['--backend', 'cuda', '--precision', 'tf32', '--iterations', '5']));
      expect([fp32.status, tf32.status], fp32.stderr + tf32.stderr).toEqual([0, 0]);
      const engine = (r: typeof fp32) => String(jsonLines(r.stdout).find((l) => l.summary)!.backend);
      expect([engine(fp32), engine(tf32)]).toEqual([
        expect.stringMatching(/^cuda \(.*, fp32[,)]/),
        expect.stringMatching(/^cuda \(.*, tf32[,)]/),
      ]);
      const bf16 = nst(withFlags(renderArgs(file('bf16.png')), ['--backend', 'cuda', '--precision', 'bf16', '--iterations', '5']));
      expect(bf16.status, bf16.stderr).toBe(2);
      expect(
        bf16.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('nst: ')),
      ).toEqual([expect.stringMatching(/^nst: --precision: /)]);
      const missing = nst(withFlags(renderArgs(file('gpu99.png')), ['--backend', 'cuda', '--gpu', '99', '--iterations', '1']));
      expect(missing.status).not.toBe(0);
      expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    } else {
      const precision = nst(withFlags(renderArgs(file('p.png')), ['--backend', 'auto', '--precision', 'fp64']));
      expect(precision.status).not.toBe(0);
      // Only what an engine implements is offered, and auto (each engine's own choice).
      expect(precision.stderr).toMatch(/^nst: --precision: 'fp64' is not one of auto, fp32, bf16, tf32$/m);
      const index = nst(withFlags(renderArgs(file('g.png')), ['--backend', 'auto', '--gpu', 'one']));
      expect(index.status).toBe(2);
      expect(index.stderr).toMatch(/^nst: --gpu: 'one' is not a whole number/);
    }
  });
});

/**
 * Every flag of the README's `nst render` table, and the tests that would
 * fail if it were ignored: [test file, test name]. A flag added to the CLI or
 * the README without a test here fails the check below, and so does a flag
 * whose tests are all skipped on this machine (their condition, below, is
 * false here): each flag needs one test that runs.
 */
const FLAG_TESTS: Record<string, [string, string][]> = {
  '--content': [
    ['test/cli-flags.test.ts', 'several --content render one job each, in one engine batch: each exactly as its own single render'],
    [
      'test/daily-use.test.ts',
      "--size N keeps each photo's aspect, per photo: a 2:1 photo at --size 96 gives 96x48 beside a 4:3 one at 96x72",
    ],
  ],
  '--style': [['test/cli-flags.test.ts', '--style-blend-weights 1,0 equals the first style alone, 0,1 the second']],
  '--style-blend-weights': [['test/cli-flags.test.ts', '--style-blend-weights 1,0 equals the first style alone, 0,1 the second']],
  '--style-scale': [['test/cli-flags.test.ts', '--style-scale resizes the style to that share of the output, keeping its aspect']],
  // Until an engine here implements masks, the test that would fail were a mask flag ignored is its refusals (test/masks-regions.test.ts renders with them).
  '--style-mask': [
    [
      'test/masks-pipeline.test.ts',
      '--style-mask, --style-region and --content-mask: a wrong count, a missing file, a file that is no image, an engine without masks: one line naming the flag, nothing written',
    ],
  ],
  '--style-region': [
    [
      'test/masks-pipeline.test.ts',
      '--style-mask, --style-region and --content-mask: a wrong count, a missing file, a file that is no image, an engine without masks: one line naming the flag, nothing written',
    ],
  ],
  '--content-mask': [
    [
      'test/masks-pipeline.test.ts',
      '--style-mask, --style-region and --content-mask: a wrong count, a missing file, a file that is no image, an engine without masks: one line naming the flag, nothing written',
    ],
  ],
  '--out': [['test/cli-flags.test.ts', '--out writes every documented format, chosen by the extension']],
  '--size': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    ['test/cli-flags.test.ts', '--size N sets the longest side and keeps the content aspect'],
    [
      'test/daily-use.test.ts',
      "--size N keeps each photo's aspect, per photo: a 2:1 photo at --size 96 gives 96x48 beside a 4:3 one at 96x72",
    ],
    ['test/daily-use.test.ts', 'with no --size the longest side is 400, the aspect kept: 400x300 for a 4:3 photo, 400x200 for a 2:1 one'],
  ],
  '--fit': [
    [
      'test/daily-use.test.ts',
      '--size WxH fits inside by default; --fit contain, cover and fill frame the photo as sharp does, naming the photo whose shape changes',
    ],
  ],
  // Four reports for 3 iterations (0 to 3, --print-every 1): a count ignored would give 201.
  '--iterations': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    ['test/cli-flags.test.ts', '--style-blend-weights 1,0 equals the first style alone, 0,1 the second'],
  ],
  '--alpha': [['test/cli-flags.test.ts', '--alpha, --beta and --tv-weight weight the reported total']],
  '--beta': [['test/cli-flags.test.ts', '--alpha, --beta and --tv-weight weight the reported total']],
  '--tv-weight': [['test/cli-flags.test.ts', '--alpha, --beta and --tv-weight weight the reported total']],
  '--lr': [
    [
      'test/cli-flags.test.ts',
      'torchvision weights: the noise and --lr are in pixel levels (the first Adam step moves each pixel by lr levels)',
    ],
  ],
  // The blocks 1-3 set, and this file's four-layer set, lack the default layers: ignoring either flag would make the render fail.
  '--content-layers': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    ['test/cli-flags.test.ts', '--alpha, --beta and --tv-weight weight the reported total'],
  ],
  '--style-layers': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    ['test/cli-flags.test.ts', '--alpha, --beta and --tv-weight weight the reported total'],
  ],
  '--pooling': [['test/cli-flags.test.ts', '--pooling max changes what the network sees after the first pooling']],
  '--init': [
    ['test/cli-flags.test.ts', '--init FILE with 0 iterations returns that image; --init content and --noise-ratio 0 return the content'],
  ],
  '--noise-ratio': [
    ['test/cli-flags.test.ts', '--init FILE with 0 iterations returns that image; --init content and --noise-ratio 0 return the content'],
  ],
  '--seed': [['test/cli.test.ts', 'writes intermediate images every --save-every and is reproducible with --seed']],
  '--print-every': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    ['test/cli-flags.test.ts', '--style-blend-weights 1,0 equals the first style alone, 0,1 the second'],
  ],
  '--save-every': [
    ['test/cli.test.ts', 'writes intermediate images every --save-every and is reproducible with --seed'],
    ['test/daily-use.test.ts', 'writes only the file named: no <stem>_20 snapshots unless --save-every asks'],
  ],
  '--checkpoint-every': [
    [
      'test/cli-flags.test.ts',
      '--checkpoint-every writes <out>.ckpt at its multiples; --resume continues there and refuses a different job',
    ],
  ],
  '--resume': [
    ['test/cli.test.ts', 'keeps the latest image on Ctrl-C beside the output, never under its name, and resumes to the same result'],
    [
      'test/cli-flags.test.ts',
      '--checkpoint-every writes <out>.ckpt at its multiples; --resume continues there and refuses a different job',
    ],
  ],
  '--fresh': [
    [
      'test/cli-hostile.test.ts',
      "never deletes or overwrites a <out>.ckpt that nst did not write, nor another job's checkpoint unless told to",
    ],
  ],
  '--from': [
    [
      'test/daily-use.test.ts',
      'records the options, inputs, weights and nst version (PNG iTXt, JPEG XMP); nst info prints them; --from repeats the render to the last digit',
    ],
  ],
  '--weights': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    [
      'test/cli-flags.test.ts',
      'torchvision weights: the noise and --lr are in pixel levels (the first Adam step moves each pixel by lr levels)',
    ],
  ],
  '--backend': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    ['test/cli.test.ts', '--backend auto picks cuda with a GPU, else the native cpu engine (required under CI), else tfjs'],
  ],
  '--precision': [
    ['test/cli-flags.test.ts', '--precision and --gpu reach the cuda backend (without a GPU: only their values are checked)'],
    [
      'test/cli-flags.test.ts',
      '--precision on the cpu backend: nst backends and the render name the instruction set and the precision; auto is fp32, bf16 where asked for',
    ],
  ],
  '--gpu': [['test/cli-flags.test.ts', '--precision and --gpu reach the cuda backend (without a GPU: only their values are checked)']],
  '--memory': [
    [
      'test/tiled-plan.test.ts',
      '--memory below the untiled plan: --dry-run prints the tiled plan and writes nothing; the render (--tile auto) tiles to fit its budget',
    ],
  ],
  '--tile': [
    [
      'test/tiled-plan.test.ts',
      '--memory below the untiled plan: --dry-run prints the tiled plan and writes nothing; the render (--tile auto) tiles to fit its budget',
    ],
    [
      'test/cli-hostile.test.ts',
      'refuses sizes and style scales that cannot fit, with the estimate, the memory available and the largest size that fits',
    ],
  ],
  '--dry-run': [
    [
      'test/tiled-plan.test.ts',
      '--memory below the untiled plan: --dry-run prints the tiled plan and writes nothing; the render (--tile auto) tiles to fit its budget',
    ],
  ],
  '--json': [
    ['test/cli.test.ts', 'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size'],
    ['test/cli-flags.test.ts', '--alpha, --beta and --tv-weight weight the reported total'],
  ],
  '--verbose': [['test/daily-use.test.ts', 'starts with one line (size, backend, weights); --verbose adds what was chosen by default']],
  '--yes': [
    [
      'test/cli-flags.test.ts',
      '--yes downloads the default weights when none are installed (without it: the built-in set renders, no download)',
    ],
  ],
  '--debug': [['test/cli-flags.test.ts', '--debug adds the stack trace to an error']],
  '--preset': [['test/quality-cli.test.ts', '--preset jcjohnson fills the options not given (L-BFGS), explicit ones win']],
  '--optimizer': [['test/quality-cli.test.ts', 'L-BFGS, luminance colours, 16 bits and alpha in one render']],
  '--lbfgs-history': [
    ['test/quality-cli.test.ts', '--lbfgs-history: one curvature pair steps differently from many once there are several'],
  ],
  '--preserve-colors': [['test/quality-cli.test.ts', 'L-BFGS, luminance colours, 16 bits and alpha in one render']],
  '--scales': [['test/quality-cli.test.ts', '--scales and --scale-iterations run the coarse passes first, at their sizes and counts']],
  '--scale-iterations': [
    ['test/quality-cli.test.ts', '--scales and --scale-iterations run the coarse passes first, at their sizes and counts'],
  ],
  '--bit-depth': [['test/quality-cli.test.ts', 'L-BFGS, luminance colours, 16 bits and alpha in one render']],
  '--icc-profile': [
    ['packages/job/test/quality-files.test.ts', 'names an embedded ICC profile, and a kept one is converted back and embedded'],
  ],
};

/**
 * Whether the conditions the named tests run under (it.runIf(x), and the
 * describe.runIf(x) around them) hold on this machine, by the name of what
 * they test: `available(cliBuilt, ...)` is cliBuilt. A condition not listed
 * here fails the check, so that a new one is added rather than assumed.
 */
const CONDITIONS: Record<string, boolean> = {
  cliBuilt,
  nativeCpu,
  built: cliBuilt,
  hasSharedWeights: existsSync(path.join(sharedWeights, 'model.json')),
  "sharedAvailable('weights')": existsSync(path.join(sharedWeights, 'model.json')),
  "sharedAvailable('images')": existsSync(path.join(sharedImages, 'tubingen.jpg')),
};

/** Text with parentheses nested up to two deep: `available(cliBuilt, 'not built (run npm run build)')`. */
const NESTED = String.raw`(?:[^()]|\((?:[^()]|\([^()]*\))*\))*`;

/** The condition's name: `available(x, 'why')` is x. */
const conditionName = (expression: string) => /^available\((\w+),/.exec(expression.trim())?.[1] ?? expression.trim();

/** The test `name` in `source`: where it is declared and the conditions it runs under; undefined when it is not there. */
function findTest(source: string, name: string): { conditions: string[] } | undefined {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // it('name', ...), it.runIf(...)('name', ...), the name on its own line as the formatter leaves it.
  const declaration = new RegExp(`\\bit(?:\\.(\\w+)\\((${NESTED})\\))?\\(\\s*(['"])${escaped}\\3,`).exec(source);
  if (!declaration) return undefined;
  const conditions: string[] = [];
  if (declaration[1] === 'runIf') conditions.push(conditionName(declaration[2]));
  else if (declaration[1]) conditions.push(`it.${declaration[1]}`); // skip, skipIf, todo: not a condition this check knows
  // The top-level describe it is in.
  const describes = [...source.slice(0, declaration.index).matchAll(new RegExp(`^describe(?:\\.(\\w+)\\((${NESTED})\\))?\\(`, 'gm'))];
  const around = describes.at(-1);
  if (around?.[1] === 'runIf') conditions.push(conditionName(around[2]));
  else if (around?.[1]) conditions.push(`describe.${around[1]}`);
  return { conditions };
}

describe('the README documents every nst render flag, and each has a test', () => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.split('## `nst render`')[1]?.split('\n## ')[0] ?? '';
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  const flagsOf = (text: string) => [...text.matchAll(/--[a-z][a-z0-9-]*/g)].map((m) => m[0]);
  const documented = [...new Set(rows.flatMap((row) => flagsOf(row.split('|')[1])))].sort();

  it.runIf(cliBuilt)('the table lists the flags of `nst render --help` (plus the global --debug)', () => {
    expect(documented.length).toBeGreaterThan(20);
    const help = nst(['render', '--help']).stdout;
    const offered = [...new Set(help.split('\n').flatMap((l) => (/^\s+(-\w, )?--/.test(l) ? flagsOf(l.trim().split(/\s{2,}/)[0]) : [])))];
    expect(documented).toEqual([...offered.filter((f) => f !== '--help'), '--debug'].sort());
    // --out's help names every format the CLI writes.
    const outHelp = help.replace(/\s+/g, ' ').split('--out <file>')[1]?.split(' --size')[0] ?? '';
    for (const ext of OUTPUT_EXTENSIONS) expect(outHelp, ext).toMatch(new RegExp(`\\${ext}[,)]`));
  });

  it('each documented flag names tests that exist', () => {
    expect(Object.keys(FLAG_TESTS).sort()).toEqual(documented);
    for (const [flag, tests] of Object.entries(FLAG_TESTS))
      for (const [testFile, name] of tests)
        expect(
          findTest(readFileSync(path.join(repoRoot, testFile), 'utf8'), name),
          `${flag}: ${testFile} has no test '${name}'`,
        ).toBeDefined();
  });

  // Without the CLI every flag's tests are skipped: that is reported (and fails under CI) where cliBuilt is decided.
  it.runIf(cliBuilt)('each documented flag has a test that runs here: one whose named tests are all skipped fails', () => {
    for (const [flag, tests] of Object.entries(FLAG_TESTS)) {
      const skipped: string[] = [];
      for (const [testFile, name] of tests) {
        const { conditions } = findTest(readFileSync(path.join(repoRoot, testFile), 'utf8'), name) ?? { conditions: ['(not found)'] };
        for (const c of conditions)
          expect(c in CONDITIONS, `${flag}: '${name}' runs under '${c}', which CONDITIONS does not know`).toBe(true);
        const off = conditions.filter((c) => !CONDITIONS[c]);
        if (off.length > 0) skipped.push(`'${name}' (${off.join(', ')} false here)`);
      }
      expect(skipped.length, `${flag}: every test it names is skipped here: ${skipped.join('; ')}`).toBeLessThan(tests.length);
    }
    // The check can fail: a test that runs only with the shared weights counts as skipped where they are absent.
    const realWeights = findTest(readFileSync(path.join(repoRoot, 'test/cli.test.ts'), 'utf8'), FLAG_TESTS['--size'][0][1]);
    expect(realWeights?.conditions).toEqual(['hasSharedWeights', 'cliBuilt']);
  });

  it('the --out row lists the output formats the CLI writes', () => {
    const outRow = rows.find((r) => r.split('|')[1].includes('--out'))!;
    const listed = [...outRow.matchAll(/`(\.[a-z]+)`/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual([...OUTPUT_EXTENSIONS].sort());
  });
});
