/**
 * The quality options through the CLI: L-BFGS reports its evaluations,
 * luminance mode keeps the content's chroma in the file, 16 bits and alpha
 * reach the file, and bad combinations are one-line errors naming the flag.
 */
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { available, cliBuilt, jsonLines, newDir, nst } from '@nst/test-helpers';

// YIQ chroma, the FCC matrix written here independently of core.
const chroma = (r: number, g: number, b: number) => [
  0.595716 * r - 0.274453 * g - 0.321263 * b,
  0.211456 * r - 0.522591 * g + 0.311135 * b,
];

describe.runIf(available(cliBuilt, 'packages/cli/dist is not built (run `npm run build`)'))('nst render quality options', () => {
  const dir = newDir('nst-quality-cli-');
  const w = 40;
  const h = 30;
  let content = '';
  let opaque = ''; // content without its alpha channel
  let style = '';
  let rgba: Buffer;
  beforeAll(async () => {
    rgba = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) {
      const [x, y] = [i % w, Math.floor(i / w)];
      rgba.set([40 + 5 * x, 200 - 4 * y, (x * y) % 200, Math.round((255 * x) / (w - 1))], 4 * i);
    }
    content = path.join(dir, 'content.png');
    await sharp(rgba, { raw: { width: w, height: h, channels: 4 } })
      .png()
      .toFile(content);
    opaque = path.join(dir, 'opaque.png');
    await sharp(rgba, { raw: { width: w, height: h, channels: 4 } })
      .removeAlpha()
      .png()
      .toFile(opaque);
    style = path.join(dir, 'style.png');
    const s = Buffer.alloc(w * h * 3);
    for (let i = 0; i < s.length; i++) s[i] = (i * 37) % 256;
    await sharp(s, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toFile(style);
  });
  const base = (iterations = 5, contentFile = content) => [
    'render',
    '--content',
    contentFile,
    '--style',
    style,
    '--weights',
    'random:3',
    '--style-layers',
    'conv1_1,conv2_1',
    '--content-layers',
    'conv2_2',
    '--size',
    `${w}x${h}`,
    '--iterations',
    String(iterations),
    '--save-every',
    '0',
    '--json',
  ];

  it('L-BFGS, luminance colours, 16 bits and alpha in one render', async () => {
    const out = path.join(dir, 'lum16.png');
    // --verbose: what happened by default is said too (the alpha passed through, the colour profile, the colour mode).
    const r = nst([...base(), '--optimizer', 'lbfgs', '--preserve-colors', 'luminance', '--bit-depth', '16', '--out', out, '--verbose']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/alpha channel of .* is passed through/);
    expect(r.stderr).toMatch(/has none embedded: read as sRGB, written as sRGB/);
    expect(r.stderr).toMatch(/luminance only/);
    const summary = jsonLines(r.stdout).find((l) => l.summary)!;
    expect(summary.iterations).toBe(5);
    expect(summary.evaluations as number).toBeGreaterThanOrEqual(5);

    const { data, info } = await sharp(out).toColourspace('rgb16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const px = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    expect([info.width, info.height, info.channels]).toEqual([w, h, 4]);
    let worst = 0;
    const levels = new Set<number>();
    for (let i = 0; i < w * h; i++) {
      const got = chroma(px[4 * i] / 257, px[4 * i + 1] / 257, px[4 * i + 2] / 257);
      const want = chroma(rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]);
      // Fully transparent pixels have no colour to keep (decoders premultiply them away).
      if (rgba[4 * i + 3] > 0) worst = Math.max(worst, Math.abs(got[0] - want[0]), Math.abs(got[1] - want[1]));
      expect(px[4 * i + 3]).toBe(rgba[4 * i + 3] * 257);
      levels.add(px[4 * i]);
    }
    console.log(`luminance mode, 16-bit file: max chroma error ${worst.toFixed(4)} levels; ${levels.size} distinct red values`);
    expect(worst).toBeLessThanOrEqual(1);
  });

  const finalTotal = (r: { stdout: string }) => (jsonLines(r.stdout).find((l) => l.summary)!.final as Record<string, number>).total;

  it('L-BFGS stays in the pixel range: the 16-bit file it writes scores the loss it reported', () => {
    // Scored by a second render that starts from the file and runs 0 iterations. Without the bounds,
    // channels left the range, the file was clipped, and its loss was another than the one reported.
    // The opaque content: a file with alpha would lose its transparent pixels' colours as an init.
    const out = path.join(dir, 'bounded.png');
    const r = nst([...base(20, opaque), '--optimizer', 'lbfgs', '--bit-depth', '16', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const scored = nst([...base(0, opaque), '--init', out, '--out', path.join(dir, 'scored.png')]);
    expect(scored.status, scored.stderr).toBe(0);
    const [reported, written] = [finalTotal(r), finalTotal(scored)];
    console.log(`L-BFGS, 20 iterations: reported J ${reported.toExponential(4)}, the written file scores ${written.toExponential(4)}`);
    // The scoring render reads the file at 8 bits: that rounding moves this small random-weights loss by
    // about 1%. Unbounded, the file scored 12.7x the reported loss.
    expect(Math.abs(written - reported) / reported).toBeLessThan(0.05);
  });

  it('--preset jcjohnson fills the options not given (L-BFGS), explicit ones win', () => {
    const preset = nst([...base(), '--preset', 'jcjohnson', '--out', path.join(dir, 'jc.png')]);
    expect(preset.status, preset.stderr).toBe(0);
    expect(preset.stderr).toMatch(/5 iterations \(L-BFGS\)/);
    const adam = nst([...base(), '--preset', 'jcjohnson', '--optimizer', 'adam', '--out', path.join(dir, 'jc-adam.png')]);
    expect(adam.status, adam.stderr).toBe(0);
    expect(adam.stderr).not.toMatch(/L-BFGS/);
    const plain = nst([...base(), '--out', path.join(dir, 'plain.png')]);
    expect(plain.stderr).not.toMatch(/L-BFGS/);
  });

  it('--lbfgs-history: one curvature pair steps differently from many once there are several', () => {
    const run = (history: string) =>
      nst([...base(), '--optimizer', 'lbfgs', '--lbfgs-history', history, '--out', path.join(dir, `h${history}.png`)]);
    const [one, many] = [run('1'), run('100')];
    expect([one.status, many.status], one.stderr + many.stderr).toEqual([0, 0]);
    expect(finalTotal(one)).not.toBe(finalTotal(many));
  });

  it('--scales and --scale-iterations run the coarse passes first, at their sizes and counts', () => {
    const r = nst([...base(), '--scales', '20', '--scale-iterations', '2,3', '--out', path.join(dir, 'scaled.png')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/scale 1\/2: 20x15, 2 iterations/);
    expect(r.stderr).toMatch(/scale 2\/2: 40x30, 3 iterations/);
    expect(jsonLines(r.stdout).find((l) => l.summary)!.iterations).toBe(3);
  });

  it('refuses 16 bits in a JPEG and a scale larger than the output, naming the flag', () => {
    const jpeg = nst([...base(), '--bit-depth', '16', '--out', path.join(dir, 'x.jpg')]);
    expect(jpeg.status).toBe(2);
    expect(jpeg.stderr.trim()).toMatch(/^nst: --bit-depth: .*x\.jpg' cannot hold 16 bits per channel: use \.png or \.tif$/);
    const scales = nst([...base(), '--scales', '64', '--out', path.join(dir, 'y.png')]);
    expect(scales.status).toBe(2);
    expect(scales.stderr.trim()).toMatch(/^nst: --scales: scale 64 is not smaller than the output \(40\)$/);
    const preset = nst([...base(), '--preset', 'best', '--out', path.join(dir, 'z.png')]);
    expect(preset.status).not.toBe(0);
    expect(preset.stderr.trim().split('\n')).toHaveLength(1);
  });
});
