/**
 * Daily use in a studio, end to end through the built CLI: photos keep
 * their shape, a batch re-renders what changed, only the files asked for
 * are written, the CLI starts with one line and helps, and results carry
 * their settings (read back here by a PNG and a JPEG parser of this file's
 * own, following the PNG spec and JPEG's APP1 segments, not by nst's code).
 * Small sizes on a light random weight set keep each run near a second.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadNativeAddon } from '@nst/native';
import { available, cliBuilt, jsonLines, newDir, nst, nstBin, repoRoot, writeTestImage } from '@nst/test-helpers';

const built = available(cliBuilt, 'packages/cli/dist is not built (run `npm run build`)');
// Under CI the native cpu engine must be built; elsewhere tfjs stands in.
const backend = available(loadNativeAddon().ok, 'the native addon is not built: these tests run on tfjs') ? 'cpu' : 'tfjs';
/** A light network: two style layers and a content layer after the first pooling, random weights. */
const LIGHT = ['--weights', 'random:5', '--style-layers', 'conv1_1,conv2_1', '--content-layers', 'conv2_2', '--backend', backend];
/** No weights installed, as for a new user. */
const fresh = () => ({ NST_CACHE_DIR: newDir('nst-daily-cache-'), NST_WEIGHTS: '' });

/** A photo of three vertical bands: red on its left quarter, green on its middle half, blue on its right quarter. */
async function bands(file: string, width: number, height: number): Promise<string> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) data[3 * (y * width + x) + (4 * x < width ? 0 : 4 * x < 3 * width ? 1 : 2)] = 255;
  await sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

async function pixels(file: string): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** The colour at (x, y), as the nearest of red, green, blue and white (each channel above or below 128). */
function colourAt(p: { data: Buffer; width: number }, x: number, y: number): string {
  const i = 3 * (y * p.width + x);
  const [r, g, b] = [p.data[i], p.data[i + 1], p.data[i + 2]].map((v) => v > 128);
  return r && g && b
    ? 'white'
    : r && !g && !b
      ? 'red'
      : g && !r && !b
        ? 'green'
        : b && !r && !g
          ? 'blue'
          : `rgb(${p.data.subarray(i, i + 3).join(',')})`;
}

// ---- an independent reader of PNG text chunks and JPEG XMP ----

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
/** CRC-32 as the PNG spec's sample code computes it (ISO 3309). */
function crc(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The text chunks (tEXt, iTXt uncompressed) of a PNG by keyword; every chunk's CRC checked. */
function pngText(file: string): Record<string, string> {
  const png = readFileSync(file);
  expect(png.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))).toBe(true);
  const text: Record<string, string> = {};
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    expect(png.readUInt32BE(at + 8 + length), `CRC of ${type}`).toBe(crc(png.subarray(at + 4, at + 8 + length)));
    const nul = data.indexOf(0);
    if (type === 'tEXt') text[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    if (type === 'iTXt') {
      expect(data[nul + 1], 'iTXt compression flag').toBe(0);
      const language = data.indexOf(0, nul + 3);
      const translated = data.indexOf(0, language + 1);
      text[data.toString('latin1', 0, nul)] = data.toString('utf8', translated + 1);
    }
    at += 12 + length;
  }
  return text;
}

/** The XMP packet of a JPEG: the APP1 segment named by Adobe's namespace. */
function jpegXmp(file: string): string | undefined {
  const jpg = readFileSync(file);
  const name = 'http://ns.adobe.com/xap/1.0/\0';
  for (let at = 2; at + 4 <= jpg.length && jpg[at] === 0xff; ) {
    const marker = jpg[at + 1];
    if (marker === 0xda) break; // the image data: no more metadata
    const length = jpg.readUInt16BE(at + 2);
    const body = jpg.subarray(at + 4, at + 2 + length);
    if (marker === 0xe1 && body.toString('latin1', 0, name.length) === name) return body.toString('utf8', name.length);
    at += 2 + length;
  }
  return undefined;
}

const unescapeXml = (t: string) =>
  t.replace(/&(lt|gt|quot|apos|amp);/g, (_, e: string) => ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' })[e]!);

/** The settings a file records, as far as these tests read them. */
type Recorded = { nst: string; options: Record<string, unknown>; inputs: unknown[]; weights: unknown; fingerprint: string };

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const version = (JSON.parse(readFileSync(path.join(repoRoot, 'packages', 'job', 'package.json'), 'utf8')) as { version: string }).version;

describe.runIf(built)('daily use: photos keep their shape', () => {
  const dir = newDir('nst-daily-size-');
  const file = (name: string) => path.join(dir, name);
  let wide = '';
  let four3 = '';
  let style = '';
  beforeAll(async () => {
    wide = await bands(file('wide.png'), 200, 100);
    four3 = await writeTestImage(file('four3.png'), 160, 120, 2);
    style = await writeTestImage(file('style.png'), 64, 48, 5);
  });
  const render = (args: string[]) => nst(['render', '-s', style, ...LIGHT, '--iterations', '0', '--init', 'content', ...args]);

  it("--size N keeps each photo's aspect, per photo: a 2:1 photo at --size 96 gives 96x48 beside a 4:3 one at 96x72", async () => {
    // Both photos after one -c, as a shell expands a glob.
    const r = render(['-c', wide, four3, '--size', '96', '-o', file('n')]);
    expect(r.status, r.stderr).toBe(0);
    expect([(await pixels(file('n/wide.png'))).width, (await pixels(file('n/wide.png'))).height]).toEqual([96, 48]);
    expect([(await pixels(file('n/four3.png'))).width, (await pixels(file('n/four3.png'))).height]).toEqual([96, 72]);
    expect(r.stdout).not.toMatch(/^size: /m); // no photo changed its shape
  });

  it('--size WxH fits inside by default; --fit contain, cover and fill frame the photo as sharp does, naming the photo whose shape changes', async () => {
    const at = (fit: string) => {
      const r = render(['-c', wide, '--size', '100x100', '-o', file(`${fit}.png`), ...(fit === 'default' ? [] : ['--fit', fit])]);
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    // inside: the whole photo, its shape kept, within 100x100.
    expect(at('default')).toMatch(/^size: '.*wide\.png' \(200x100\) keeps its shape at 100x50 \(fit inside 100x100; .*\)$/m);
    const inside = await pixels(file('default.png'));
    expect([inside.width, inside.height]).toEqual([100, 50]);
    expect([colourAt(inside, 10, 25), colourAt(inside, 50, 25), colourAt(inside, 90, 25)]).toEqual(['red', 'green', 'blue']);
    // fill: 100x100, the bands stretched to the full height.
    expect(at('fill')).toMatch(/^size: '.*wide\.png' \(200x100\) is stretched to 100x100/m);
    const fill = await pixels(file('fill.png'));
    expect([fill.width, fill.height]).toEqual([100, 100]);
    for (const y of [5, 50, 95])
      expect([colourAt(fill, 10, y), colourAt(fill, 50, y), colourAt(fill, 90, y)]).toEqual(['red', 'green', 'blue']);
    // cover: the middle 100x100 of the photo (at 200x100 already): its green half only.
    expect(at('cover')).toMatch(/^size: '.*wide\.png' \(200x100\) is cropped to 100x100/m);
    const cover = await pixels(file('cover.png'));
    expect([cover.width, cover.height]).toEqual([100, 100]);
    for (const [x, y] of [
      [3, 3],
      [96, 96],
      [50, 50],
    ])
      expect(colourAt(cover, x, y)).toBe('green');
    // contain: the photo at 100x50 in the middle of 100x100, white above and below.
    expect(at('contain')).toMatch(/^size: '.*wide\.png' \(200x100\) is padded to 100x100/m);
    const contain = await pixels(file('contain.png'));
    expect([contain.width, contain.height]).toEqual([100, 100]);
    expect([colourAt(contain, 50, 5), colourAt(contain, 50, 95)]).toEqual(['white', 'white']);
    expect([colourAt(contain, 10, 50), colourAt(contain, 50, 50), colourAt(contain, 90, 50)]).toEqual(['red', 'green', 'blue']);
  });

  it('with no --size the longest side is 400, the aspect kept: 400x300 for a 4:3 photo, 400x200 for a 2:1 one', async () => {
    const r = render(['-c', four3, wide, '-o', file('default-size')]);
    expect(r.status, r.stderr).toBe(0);
    const [a, b] = await Promise.all([pixels(file('default-size/four3.png')), pixels(file('default-size/wide.png'))]);
    expect([a.width, a.height, b.width, b.height]).toEqual([400, 300, 400, 200]);
  });
});

describe.runIf(built)('daily use: the files a render leaves', () => {
  const dir = newDir('nst-daily-files-');
  const file = (name: string) => path.join(dir, name);

  it('writes only the file named: no <stem>_20 snapshots unless --save-every asks', async () => {
    const [content, style] = await Promise.all([writeTestImage(file('c.png'), 32, 24, 1), writeTestImage(file('s.png'), 32, 24, 4)]);
    const out = newDir('nst-daily-out-');
    const render = (name: string, extra: string[] = []) =>
      nst(['render', '-c', content, '-s', style, '-o', path.join(out, name), '--size', '32', '-n', '40', ...LIGHT, ...extra]);
    const r = render('only.png');
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(out)).toEqual(['only.png']);
    const asked = render('snap.png', ['--save-every', '20']);
    expect(asked.status, asked.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['only.png', 'snap.png', 'snap_20.png']);
  });
});

describe.runIf(built)('daily use: results carry their settings', () => {
  const dir = newDir('nst-daily-meta-');
  const file = (name: string) => path.join(dir, name);
  let content = '';
  let style = '';
  let style2 = '';
  beforeAll(async () => {
    [content, style, style2] = await Promise.all([
      writeTestImage(file('photo one.png'), 48, 36, 1),
      writeTestImage(file('style.png'), 40, 40, 6),
      writeTestImage(file('style2.png'), 40, 40, 8),
    ]);
  });
  const options = [
    '--size',
    '40x30',
    '--fit',
    'fill',
    '-n',
    '6',
    '--seed',
    '7',
    '--alpha',
    '3.25',
    '--style-blend-weights',
    '1,3',
    '--lr',
    '1.5',
  ];
  const infoRegistered = () => /^Usage: nst info /m.test(nst(['info', '--help']).stdout);

  it('records the options, inputs, weights and nst version (PNG iTXt, JPEG XMP); nst info prints them; --from repeats the render to the last digit', async () => {
    const out = file('made.png');
    const made = nst(['render', '-c', content, '-s', style, style2, '-o', out, ...options, ...LIGHT, '--json']);
    expect(made.status, made.stderr).toBe(0);
    const final = jsonLines(made.stdout).find((l) => l.summary)!.final;

    const text = pngText(out);
    expect(text.Software).toBe(`nst ${version}`);
    const settings = JSON.parse(text.nst) as Recorded;
    expect(settings.nst).toBe(version);
    expect(settings.options).toMatchObject({
      content,
      style: [style, style2],
      size: '40x30',
      fit: 'fill',
      iterations: '6',
      seed: '7',
      alpha: '3.25',
      styleBlendWeights: ['1', '3'],
      lr: '1.5',
      styleLayers: 'conv1_1:1,conv2_1:1',
      contentLayers: 'conv2_2:1',
    });
    expect(settings.inputs).toEqual([
      { field: 'content', file: content, sha256: sha256(content) },
      { field: 'style', file: style, sha256: sha256(style) },
      { field: 'style', file: style2, sha256: sha256(style2) },
    ]);
    expect(settings.weights).toMatchObject({ source: 'random:5', identity: 'random:5' });
    expect(settings).toMatchObject({ state: 'final', iteration: 6, size: '40x30', losses: final });
    expect(settings.fingerprint).toMatch(/^[0-9a-f]{64}$/);

    // A JPEG carries the same settings in XMP.
    const jpg = file('made.jpg');
    const again = nst(['render', '-c', content, '-s', style, style2, '-o', jpg, ...options, ...LIGHT]);
    expect(again.status, again.stderr).toBe(0);
    const xmp = jpegXmp(jpg);
    expect(xmp).toMatch(/xmp:CreatorTool="nst /);
    const fromXmp = JSON.parse(unescapeXml(/<nst:settings>([\s\S]*?)<\/nst:settings>/.exec(xmp!)![1])) as Recorded;
    expect(fromXmp.options).toEqual(settings.options);
    expect(fromXmp.fingerprint).toBe(settings.fingerprint);

    // --from: the same picture and losses, to the last digit.
    const repeated = file('again.png');
    const from = nst(['render', '--from', out, '-o', repeated, '--backend', backend, '--json']);
    expect(from.status, from.stderr).toBe(0);
    expect(jsonLines(from.stdout).find((l) => l.summary)!.final).toEqual(final);
    expect((await pixels(repeated)).data.equals((await pixels(out)).data)).toBe(true);
    // Flags given win over the recorded ones: another seed, another picture.
    const reseeded = nst(['render', '--from', out, '-o', file('reseeded.png'), '--seed', '8', '--backend', backend]);
    expect(reseeded.status, reseeded.stderr).toBe(0);
    expect((await pixels(file('reseeded.png'))).data.equals((await pixels(out)).data)).toBe(false);
    // Other weights, or an input whose bytes changed, are refused in one line.
    const otherWeights = nst(['render', '--from', out, '-o', file('w.png'), '--weights', 'random:6', '--backend', backend]);
    expect(otherWeights.status).toBe(2);
    expect(otherWeights.stderr.trim()).toMatch(
      /^nst: --weights: '.*made\.png' was made with the weights random:5 \(random:5\), not random:6/,
    );
    const original = readFileSync(style2);
    await writeTestImage(style2, 40, 40, 9);
    const changed = nst(['render', '--from', out, '-o', file('c.png'), '--backend', backend]);
    writeFileSync(style2, original);
    expect(changed.status).toBe(2);
    expect(changed.stderr.trim()).toMatch(/^nst: --from: '.*style2\.png' has changed since '.*made\.png' was made from it/);
    const notOurs = nst(['render', '--from', content, '-o', file('n.png')]);
    expect(notOurs.stderr.trim()).toMatch(/^nst: --from: '.*photo one\.png' records no nst settings/);

    // nst info (registered in main.ts's list of commands).
    if (!available(infoRegistered(), 'packages/cli/src/main.ts does not list the info command (commands/info.ts)')) return;
    const info = nst(['info', out]);
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/: the result of 6 iterations, 40x30$/m);
    expect(info.stdout).toMatch(new RegExp(`^made by: nst ${version.replace(/\./g, '\\.')} on ${backend}`, 'm'));
    expect(info.stdout).toContain(`content: ${content} (SHA-256 ${sha256(content)})`);
    for (const line of ['--seed 7', '--alpha 3.25', '--fit fill', '--size 40x30', '--style-blend-weights 1,3'])
      expect(info.stdout).toMatch(new RegExp(`^${line}$`, 'm'));
    expect(nst(['info', content]).stderr.trim()).toMatch(/^nst: '.*photo one\.png' records no nst settings/);
    const json = nst(['info', jpg, '--json']);
    expect(JSON.parse(json.stdout).options).toEqual(settings.options);
  });
});

describe.runIf(built)('daily use: nst batch', () => {
  const dir = newDir('nst-daily-batch-');
  const file = (name: string) => path.join(dir, name);
  const common = { size: '24x16', 'style-layers': 'conv1_1,conv2_1', 'content-layers': 'conv2_2', iterations: 3 };
  beforeAll(async () => {
    await Promise.all([1, 2, 3, 4].map((k) => writeTestImage(file(`img${k}.png`), 40, 30, k)));
  });
  const manifest = (name: string, jobs: object[]) => {
    writeFileSync(file(name), jobs.map((j) => JSON.stringify(j)).join('\n') + '\n');
    return file(name);
  };
  const run = (args: string[]) => nst(['batch', ...args, '--weights', 'random:4', '--backend', backend, '--json']);
  /** The loss layers for every job, from the command line. */
  const ONE_STYLE_LAYER = ['--style-layers', 'conv1_1', '--content-layers', 'conv2_2'];
  const events = (r: { stdout: string }, kind: string) => jsonLines(r.stdout).filter((e) => e.event === kind);
  const statuses = (r: { stdout: string }) => Object.fromEntries(events(r, 'job').map((e) => [e.job, e.status]));

  it('re-renders a row whose inputs or settings changed, saying what changed, and skips an unchanged one; --force renders all', async () => {
    const rows = [
      { id: 'a', content: 'img1.png', style: 'img3.png', out: 'out/a.png', ...common },
      { id: 'b', content: 'img2.png', style: 'img3.png', out: 'out/b.png', ...common },
    ];
    const m = manifest('change.jsonl', rows);
    expect(statuses(run([m]))).toEqual({ a: 'done', b: 'done' });
    const bBefore = readFileSync(file('out/b.png'));
    // b's style changes in the manifest: b renders again, a is skipped.
    manifest('change.jsonl', [rows[0], { ...rows[1], style: 'img4.png' }]);
    const second = run([m]);
    expect(second.status, second.stderr).toBe(0);
    expect(statuses(second)).toEqual({ a: 'skipped', b: 'done' });
    expect(events(second, 'plan').find((e) => e.job === 'b')).toMatchObject({
      action: 'render',
      reason: expect.stringMatching(/^style changed since/),
    });
    expect(readFileSync(file('out/b.png')).equals(bBefore)).toBe(false);
    // The bytes of a's photo change under the same name: a renders again.
    writeFileSync(file('img1.png'), readFileSync(file('img4.png')));
    const third = run([m]);
    expect(statuses(third)).toEqual({ a: 'done', b: 'skipped' });
    expect(events(third, 'plan').find((e) => e.job === 'a')!.reason).toMatch(/^content \(the file's contents\) changed since/);
    // Each result records the fingerprint its output carries.
    const results = jsonLines(readFileSync(`${m}.results.jsonl`, 'utf8'));
    expect(results.map((x) => typeof x.fingerprint)).toEqual(['string', 'string']);
    expect(statuses(run([m, '--force']))).toEqual({ a: 'done', b: 'done' });
  });

  it('--dry-run checks every row and prints the plan, rendering and changing nothing', () => {
    const m = manifest('dry.jsonl', [
      { id: 'new', content: 'img1.png', style: 'img3.png', out: 'dry/new.png', ...common },
      { id: 'missing', content: 'nope.png', style: 'img3.png', out: 'dry/m.png', ...common },
      { id: 'typo', content: 'img2.png', style: 'img3.png', out: 'dry/t.png', ...common, iterations: 'three' },
    ]);
    const r = run([m, '--dry-run']);
    expect(r.status).toBe(1); // a row would fail
    expect(events(r, 'plan').map((e) => [e.job, e.action])).toEqual([
      ['new', 'render'],
      ['missing', 'fail'],
      ['typo', 'fail'],
    ]);
    expect(events(r, 'plan')[1].reason).toMatch(/^content: no such file '.*nope\.png'$/);
    // 24x16 fits the 4:3 photo as 21x16.
    expect(events(r, 'dry-run')).toEqual([
      { event: 'dry-run', toRender: 1, skipped: 0, failed: 2, batches: [{ jobs: ['new'], size: '21x16' }] },
    ]);
    expect(existsSync(file('dry'))).toBe(false);
    expect(existsSync(`${m}.results.jsonl`)).toBe(false);
    const plain = nst(['batch', m, '--dry-run', '--weights', 'random:4', '--backend', backend]);
    expect(plain.stdout).toMatch(/^missing: fail: content: no such file/m);
    expect(plain.stdout).toMatch(/^new: render -> .*new\.png \(21x16\)$/m);
    expect(plain.stdout).toMatch(
      /^plan: 1 to render in 1 batch \[new at 21x16\], 0 up to date, 2 failing; nothing rendered \(--dry-run\)$/m,
    );
  });

  it('render options on the command line apply to every row that does not set them; a semicolon CSV is read', async () => {
    writeFileSync(
      file('rows.csv'),
      'id;content;style;out;size;style-layers\nown;img1.png;"img3.png,img4.png";csv/own.png;20x10;conv1_1,conv2_1\ncli;img2.png;img3.png;csv/cli.png;;\n',
    );
    const r = run([file('rows.csv'), '--size', '30x12', '--fit', 'fill', '-n', '2', ...ONE_STYLE_LAYER]);
    expect(r.status, r.stderr).toBe(0);
    const byJob = Object.fromEntries(events(r, 'job').map((e) => [e.job, e]));
    expect([byJob.own.iterations, byJob.cli.iterations]).toEqual([2, 2]);
    const [own, cli] = await Promise.all([pixels(file('csv/own.png')), pixels(file('csv/cli.png'))]);
    expect([own.width, own.height, cli.width, cli.height]).toEqual([20, 10, 30, 12]);
    // The row's own layers (two styles blended) against the command line's: their settings say so.
    const settings = (f: string) => JSON.parse(pngText(f).nst).options;
    expect(settings(file('csv/own.png'))).toMatchObject({
      styleLayers: 'conv1_1:1,conv2_1:1',
      style: [file('img3.png'), file('img4.png')],
    });
    expect(settings(file('csv/cli.png'))).toMatchObject({ styleLayers: 'conv1_1:1', fit: 'fill' });
    const bad = nst(['batch', file('rows.csv'), '--size', 'big']);
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^nst: --size: 'big' is not WIDTHxHEIGHT/);
  });

  it('folder mode renders every photo in every style into OUT/<photo>-<style>.png, without a manifest', async () => {
    const photos = newDir('nst-daily-photos-');
    const styles = newDir('nst-daily-styles-');
    await Promise.all([writeTestImage(path.join(photos, 'p1.png'), 30, 20, 1), writeTestImage(path.join(photos, 'p2.jpg'), 20, 30, 2)]);
    await Promise.all([writeTestImage(path.join(styles, 's1.png'), 30, 30, 3), writeTestImage(path.join(styles, 's2.png'), 30, 30, 4)]);
    writeFileSync(path.join(photos, 'notes.txt'), 'not a photo');
    const out = path.join(newDir('nst-daily-res-'), 'res');
    const r = run(['--photos', photos, '--styles', styles, '-o', out, '--size', '24', '-n', '2', ...ONE_STYLE_LAYER]);
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['p1-s1.png', 'p1-s2.png', 'p2-s1.png', 'p2-s2.png', 'results.jsonl']);
    expect((await pixels(path.join(out, 'p2-s1.png'))).height).toBe(24);
    const into = nst(['batch', '--photos', photos, '--styles', styles, '-o', photos]);
    expect(into.stderr.trim()).toMatch(/^nst: --out: the results would go among the photos/);
  });

  it("the summary lists failed rows and why; progress names each running job's iterations; each job gets its share of its batch's seconds and the loss terms that add up to its total", () => {
    const m = manifest('report.jsonl', [
      { id: 'x', content: 'img1.png', style: 'img3.png', out: 'rep/x.png', ...common, iterations: 8, 'tv-weight': 0.5 },
      { id: 'y', content: 'img2.png', style: 'img4.png', out: 'rep/y.png', ...common, iterations: 8, 'tv-weight': 0.5 },
      { id: 'gone', content: 'nope.png', style: 'img4.png', out: 'rep/g.png', ...common },
    ]);
    const r = run([m]);
    expect(r.status).toBe(1);
    const summary = events(r, 'summary')[0];
    expect(summary.failures).toEqual([{ job: 'gone', line: 3, error: expect.stringMatching(/^content: no such file '.*nope\.png'$/) }]);
    const progress = events(r, 'progress').flatMap((e) => e.jobs as { job: string; iteration: number; iterations: number }[]);
    // x and y run together: each is reported from its start to its end.
    for (const job of ['x', 'y']) {
      expect(progress).toContainEqual({ job, iteration: 0, iterations: 8 });
      expect(progress).toContainEqual({ job, iteration: 8, iterations: 8 });
    }
    for (const job of events(r, 'job').filter((e) => e.status === 'done')) {
      expect(job.batchSize).toBe(2);
      expect(job.seconds).toBeCloseTo((job.batchSeconds as number) / 2, 2);
      const l = job.losses as { content: number; style: number; tv: number; total: number };
      expect(l.tv).toBeGreaterThan(0);
      expect(Math.abs(l.content + l.style + l.tv - l.total) / l.total).toBeLessThan(1e-5);
    }
    const plain = nst(['batch', m, '--weights', 'random:4', '--backend', backend]);
    expect(plain.stdout).toMatch(/^ {2}failed: gone \(line 3\): content: no such file/m);
  });
});

describe.runIf(built)('daily use: a quiet and helpful CLI', () => {
  const dir = newDir('nst-daily-cli-');
  const file = (name: string) => path.join(dir, name);
  let content = '';
  let style = '';
  beforeAll(async () => {
    [content, style] = await Promise.all([writeTestImage(file('c.png'), 32, 24, 1), writeTestImage(file('s.png'), 32, 24, 3)]);
  });
  const renderArgs = (out: string, ...extra: string[]) => ['render', '-c', content, '-s', style, '-o', file(out), '--size', '32', ...extra];

  it('starts with one line (size, backend, weights); --verbose adds what was chosen by default', () => {
    // --backend auto: a machine without NVIDIA says nothing of CUDA (nst backends does).
    const args = renderArgs('quiet.png', '-n', '2');
    const r = nst(args, fresh());
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    const first = lines.findIndex((l) => l.startsWith('iteration '));
    expect(lines.slice(0, first)).toEqual([
      expect.stringMatching(
        /^rendering 32x24, 2 iterations on (cuda|cpu|tfjs).*; weights: no full VGG-19 installed, using the built-in blocks 1-3 .*nst weights fetch.* -> .*quiet\.png$/,
      ),
    ]);
    expect(r.stdout + r.stderr).not.toMatch(/unavailable|driver|colour profile|layers:/);
    const verbose = nst([...args, '--verbose'], fresh());
    expect(verbose.stdout).toMatch(/^layers: content conv3_2; style conv1_1, conv2_1, conv3_1 /m);
    expect(verbose.stdout).toMatch(/^weights: embedded \(safetensors, 8 conv layers, caffe-bgr\)$/m);
    expect(verbose.stdout).toMatch(/^colour profile: '.*c\.png' has none embedded/m);
  });

  it("reports the user's own mistakes before loading weights or probing backends", () => {
    // Weights that do not exist and a backend this machine may lack: the missing photo is said first.
    const r = nst(['render', '-c', file('nope.jpg'), '-s', style, '-o', file('x.png'), '-w', file('no-weights.h5'), '--backend', 'cuda']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/^nst: --content: no such file '.*nope\.jpg'$/);
    const batch = nst(['batch', file('no-jobs.csv'), '-w', file('no-weights.h5'), '--backend', 'cuda']);
    expect(batch.stderr.trim()).toMatch(/^nst: no such file '.*no-jobs\.csv'$/);
  });

  it('nst backends names an optional package that is not installed, not how Node failed to load it', () => {
    const r = nst(['backends']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/Cannot find (package|module)|imported from/);
    const tfjsNode = existsSync(path.join(repoRoot, 'node_modules', '@tensorflow', 'tfjs-node'));
    if (!tfjsNode && /^tfjs\s+yes/m.test(r.stdout))
      expect(r.stdout).toMatch(/@tensorflow\/tfjs-node is not installed \(optional: npm install @tensorflow\/tfjs-node\)/);
  });

  it('--help shows examples and the layer defaults of the weights in use; a mistyped flag or command gets a suggestion, whatever else is missing', () => {
    const help = nst(['render', '--help'], fresh());
    expect(help.stdout).toMatch(/^Examples:$/m);
    expect(help.stdout).toMatch(/nst render --from result\.png -o again\.png/);
    expect(help.stdout.replace(/\s+/g, ' ')).toMatch(
      /--content-layers <list> content layers with weights \(default: conv3_2:1, the built-in blocks 1-3's own/,
    );
    expect(nst(['render', '--help', '-w', 'random:1'], fresh()).stdout.replace(/\s+/g, ' ')).toMatch(
      /content layers with weights \(default: conv4_2:1\)/,
    );
    expect(nst(['batch', '--help']).stdout).toMatch(/^ {2}nst batch --photos photos\/ --styles paintings\/ -o out\//m);
    const typo = nst(['render', '--iteratons', '3']);
    expect(typo.status).not.toBe(0);
    expect(typo.stderr.trim()).toBe("nst: unknown option '--iteratons' (Did you mean --iterations?)");
    expect(nst(['rendr']).stderr.trim()).toMatch(/^nst: unknown command 'rendr' \(Did you mean render\?\)$/);
  });

  const hasScript = spawnSync('script', ['--version']).status === 0;
  it.runIf(available(hasScript, 'script (util-linux) is not installed: no terminal to test the progress bar in'))(
    'one speed unit: seconds per iteration in the progress bar on a terminal, the reports and the summary',
    () => {
      const command = [process.execPath, nstBin, ...renderArgs('tty.png', '-n', '30', '--print-every', '10', ...LIGHT)];
      const quoted = command.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      // script gives the command a terminal (stdout.isTTY): the progress bar is drawn.
      const r = spawnSync('script', ['-qec', quoted, '/dev/null'], {
        encoding: 'utf8',
        env: { ...process.env, ...fresh() },
        timeout: 100_000,
      });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/\[#+-*\] \d+\/30 .* [\d.]+ s\/it {2}ETA/);
      expect(r.stdout).toMatch(/^done: 30 iterations in [\d.]+ s \([\d.]+ s\/it\)/m);
      expect(r.stdout).not.toMatch(/it\/s/);
    },
  );
});
