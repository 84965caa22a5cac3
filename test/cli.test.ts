import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  REDUCED_FLAGS,
  available,
  cliBuilt as built,
  jsonLines,
  newDir,
  nst,
  nstAsync,
  repoRoot,
  sharedAvailable,
  sharedImages,
  sharedWeights,
  underCi,
  writeTestImage,
} from '@nst/test-helpers';

const cliBuilt = available(built, 'packages/cli/dist is not built (run `npm run build`)');
const hasSharedWeights = sharedAvailable('weights');
const hasSharedImages = sharedAvailable('images');

describe.runIf(cliBuilt)('nst render (end to end)', () => {
  const dir = newDir('nst-cli-');
  let content = '';
  let style = '';
  beforeAll(async () => {
    if (hasSharedImages) {
      content = path.join(sharedImages, 'tubingen.jpg');
      style = path.join(sharedImages, 'starry_night.jpg');
    } else {
      content = await writeTestImage(path.join(dir, 'content.png'), 96, 72, 1);
      style = await writeTestImage(path.join(dir, 'style.png'), 96, 72, 5);
    }
  });

  it.runIf(hasSharedWeights)(
    'with the real weights, the style loss falls at least 5x in 30 iterations, output at the requested size',
    async () => {
      const out = path.join(dir, 'real.png');
      const r = nst([
        'render',
        '--content',
        content,
        '--style',
        style,
        '--out',
        out,
        '--weights',
        sharedWeights,
        ...REDUCED_FLAGS,
        '--size',
        '64x48',
        '--iterations',
        '30',
        '--print-every',
        '10',
        '--save-every',
        '0',
        '--backend',
        'tfjs',
        '--json',
      ]);
      expect(r.stderr).not.toMatch(/internal error/);
      expect(r.status, r.stderr).toBe(0);
      const lines = jsonLines(r.stdout);
      const reports = lines.filter((l) => !l.summary);
      expect(reports.map((l) => l.iteration)).toEqual([0, 10, 20, 30]);
      for (const l of reports) {
        const want = 10 * (l.content as number) + 40 * (l.style as number);
        expect(Math.abs((l.total as number) - want) / want).toBeLessThan(1e-6);
        expect(typeof l.elapsedMs).toBe('number');
      }
      const first = reports[0].style as number;
      const last = reports[reports.length - 1].style as number;
      expect(first / last).toBeGreaterThan(5);
      const summary = lines[lines.length - 1];
      expect(summary.summary).toBe(true);
      expect(summary.output).toBe(out);
      expect(summary.size).toBe('64x48');
      expect(summary.iterations).toBe(30);
      expect(typeof summary.seconds).toBe('number');
      expect(String(summary.backend)).toMatch(/^tfjs/);
      const meta = await sharp(out).metadata();
      expect([meta.width, meta.height]).toEqual([64, 48]);
    },
  );

  it('writes intermediate images every --save-every and is reproducible with --seed', async () => {
    const out = path.join(dir, 'seeded.png');
    const args = [
      'render',
      '--content',
      content,
      '--style',
      style,
      '--weights',
      'random:3',
      '--style-layers',
      'conv1_1,conv2_1',
      '--content-layers',
      'conv2_2',
      '--size',
      '24x16',
      '--iterations',
      '6',
      '--save-every',
      '3',
      '--print-every',
      '3',
      '--backend',
      'tfjs',
    ];
    const a = nst([...args, '--seed', '11', '--out', out, '--json']);
    expect(a.status, a.stderr).toBe(0);
    expect(existsSync(path.join(dir, 'seeded_3.png'))).toBe(true);
    expect(existsSync(path.join(dir, 'seeded_6.png'))).toBe(false); // the final one is the output itself
    const out2 = path.join(dir, 'seeded-again.png');
    const b = nst([...args, '--seed', '11', '--out', out2, '--json']);
    expect(b.status, b.stderr).toBe(0);
    const [pa, pb] = await Promise.all([sharp(out).raw().toBuffer(), sharp(out2).raw().toBuffer()]);
    expect(pa.equals(pb)).toBe(true);
    const c = nst([...args, '--seed', '12', '--out', path.join(dir, 'other-seed.png'), '--json']);
    expect(c.status, c.stderr).toBe(0);
    expect((await sharp(path.join(dir, 'other-seed.png')).raw().toBuffer()).equals(pa)).toBe(false);
  });

  it('--backend auto picks cuda with a GPU, else the native cpu engine (required under CI), else tfjs', async () => {
    // The expectation comes from the machine, not from the CLI: a GPU's device node, and the addon that
    // `npm ci` builds (CI's build is strict, and CI has no GPU: there auto must pick cpu).
    const gpu = existsSync('/dev/nvidia0');
    const addonBuilt = existsSync(path.join(repoRoot, 'native', 'build', 'Release', 'nst_native.node'));
    expect.assertions(3);
    const r = nst([
      'render',
      '--content',
      content,
      '--style',
      style,
      '--out',
      path.join(dir, 'auto.png'),
      '--weights',
      'random:2',
      '--style-layers',
      'conv1_1',
      '--content-layers',
      'conv1_2',
      '--size',
      '16x12',
      '--iterations',
      '2',
      '--json',
      // The backends passed over are named with --verbose (nst backends says why each cannot run).
      '--verbose',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const backend = String(jsonLines(r.stdout).find((l) => l.summary)?.backend);
    if (underCi && !gpu) {
      expect(backend).toMatch(/^cpu \(oneDNN/);
      expect(r.stderr).toMatch(/cuda unavailable: /);
    } else if (gpu) {
      expect(backend).toMatch(/^cuda/);
      expect(r.stderr).not.toMatch(/unavailable: /);
    } else if (addonBuilt) {
      expect(backend).toMatch(/^cpu \(oneDNN/);
      expect(r.stderr).toMatch(/cuda unavailable: /);
    } else {
      expect(backend).toMatch(/^tfjs/);
      expect(r.stderr).toMatch(/cpu unavailable: /);
    }
  });

  it('keeps the latest image on Ctrl-C beside the output, never under its name, and resumes to the same result', async () => {
    const out = path.join(dir, 'interrupted.png');
    const args = [
      'render',
      '--content',
      content,
      '--style',
      style,
      '--weights',
      'random:4',
      '--style-layers',
      'conv1_1,conv2_1',
      '--content-layers',
      'conv2_2',
      '--size',
      '32x24',
      '--print-every',
      '1',
      '--save-every',
      '0',
      '--backend',
      'tfjs',
      '--json',
    ];
    let sent = false;
    const r = await nstAsync([...args, '--iterations', '400', '--out', out], (_chunk, child) => {
      if (!sent && /"iteration":3\b/.test(_chunk)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    expect(r.status, r.stderr).toBe(130);
    const summary = jsonLines(r.stdout).find((l) => l.summary)!;
    expect(summary.interrupted).toBe(true);
    const stoppedAt = summary.iterations as number;
    expect(stoppedAt).toBeGreaterThanOrEqual(3);
    expect(stoppedAt).toBeLessThan(400);
    // A script that looks for the output must not take a partial picture for a result.
    const partial = path.join(dir, 'interrupted.partial.png');
    expect(existsSync(out)).toBe(false);
    expect(summary.output).toBe(partial);
    expect((await sharp(partial).metadata()).width).toBe(32);
    expect(existsSync(`${out}.ckpt`)).toBe(true);

    const resumed = nst([...args, '--out', out, '--resume', '--iterations', String(stoppedAt + 4)]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resumed from .*interrupted\.png\.ckpt at iteration/);
    const reports = jsonLines(resumed.stdout).filter((l) => !l.summary);
    expect(reports[0].iteration).toBe(stoppedAt);
    expect(reports[reports.length - 1].iteration).toBe(stoppedAt + 4);
    expect(existsSync(`${out}.ckpt`)).toBe(false); // a finished job cleans up its checkpoint
    expect(existsSync(partial)).toBe(false); // and the partial image: the output replaces it

    // the same number of iterations in one go gives the same image
    const straight = path.join(dir, 'straight.png');
    const again = nst([...args, '--out', straight, '--iterations', String(stoppedAt + 4)]);
    expect(again.status, again.stderr).toBe(0);
    const [a, b] = await Promise.all([sharp(out).raw().toBuffer(), sharp(straight).raw().toBuffer()]);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    expect(maxDiff).toBeLessThanOrEqual(1);
  });
});

describe.runIf(cliBuilt)('nst render errors: one line, non-zero exit, no stack trace', () => {
  const dir = newDir('nst-cli-err-');
  let img = '';
  beforeAll(async () => {
    img = await writeTestImage(path.join(dir, 'img.png'), 32, 24, 2);
  });
  // A flag given twice with different values is an error: `over` replaces base values ('--size', '12by7', ...).
  const base = (...over: string[]) => {
    const flags: Record<string, string> = { '--weights': 'random:1', '--size': '16x16', '--iterations': '1', '--backend': 'tfjs' };
    for (let i = 0; i < over.length; i += 2) flags[over[i]] = over[i + 1];
    return ['render', ...Object.entries(flags).flat()];
  };

  function expectOneLineError(r: ReturnType<typeof nst>, pattern: RegExp) {
    expect(r.status).not.toBe(0);
    expect(r.status).not.toBeNull();
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }

  it('missing content file', () => {
    expectOneLineError(
      nst([...base(), '--content', path.join(dir, 'nope.jpg'), '--style', img, '--out', path.join(dir, 'o.png')]),
      /--content: no such file '.*nope\.jpg'/,
    );
  });
  it('unreadable style image', () => {
    const junk = path.join(dir, 'junk.png');
    writeFileSync(junk, 'this is not a picture');
    expectOneLineError(
      nst([...base(), '--content', img, '--style', junk, '--out', path.join(dir, 'o.png')]),
      /--style: cannot read '.*junk\.png' as an image/,
    );
  });
  it('unknown layer', () => {
    expectOneLineError(
      nst([...base(), '--content', img, '--style', img, '--style-layers', 'conv1_1,conv7_1', '--out', path.join(dir, 'o.png')]),
      /--style-layers: unknown layer 'conv7_1'/,
    );
  });
  it.runIf(hasSharedWeights)('layer absent from the weight set', () => {
    expectOneLineError(
      nst([...base('--weights', sharedWeights), '--content', img, '--style', img, '--out', path.join(dir, 'o.png')]),
      /--content-layers: layer conv4_2 is not in the weight set .*vgg19-keras-blocks1-3 \(it has conv1_1 \.\. conv3_4\)/,
    );
  });
  it('bad --size', () => {
    expectOneLineError(
      nst([...base('--size', '12by7'), '--content', img, '--style', img, '--out', path.join(dir, 'o.png')]),
      /--size: '12by7' is not WIDTHxHEIGHT/,
    );
  });
  it('unwritable output', () => {
    const ok = ['--content', img, '--style', img];
    expectOneLineError(nst([...base(), ...ok, '--out', path.join(img, 'o.png')]), /--out: '.*img\.png' is not a folder/);
    expectOneLineError(
      nst([...base(), ...ok, '--out', path.join(dir, 'no-such-folder', 'o.png')]),
      /--out: cannot write into folder '.*no-such-folder' \(it does not exist\)/,
    );
    expectOneLineError(nst([...base(), ...ok, '--out', path.join(dir, 'o.gif2')]), /--out: .*no supported image extension/);
  });
  it('bad numbers and unknown weights', () => {
    expectOneLineError(
      nst([...base('--iterations', 'ten'), '--content', img, '--style', img, '--out', path.join(dir, 'o.png')]),
      /^nst: --iterations: 'ten' is not a whole number/,
    );
    expectOneLineError(
      nst([...base('--weights', path.join(dir, 'missing-weights')), '--content', img, '--style', img, '--out', path.join(dir, 'o.png')]),
      /missing-weights/,
    );
  });
});
