/**
 * Hostile and careless inputs at the command line, end to end on the built
 * CLI: the user's files are never lost, a broken result never exits 0, memory
 * is estimated before a run, a closed stdout does not lose the image, the
 * user's mistakes are one-line errors with exit status 2, flags are strict,
 * signals save and exit 128 + n. Small sizes and random weights keep it fast.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeCheckpoint } from '@nst/job';
import { randomWeights, writeCache } from '@nst/weights';
import { available, cliBuilt, jsonLines, newDir, nst, nstAsync, writeTestImage, type CliResult } from '@nst/test-helpers';

/** A tiny job on random weights and three layers: each run takes about a second plus start-up. */
const job = (...over: string[]) => {
  const flags: Record<string, string> = {
    '--weights': 'random:1',
    '--style-layers': 'conv1_1,conv2_1',
    '--content-layers': 'conv2_1',
    '--size': '16x12',
    '--iterations': '4',
    '--save-every': '0',
    '--backend': 'tfjs',
  };
  for (let i = 0; i < over.length; i += 2) flags[over[i]] = over[i + 1];
  return ['render', ...Object.entries(flags).flat()];
};

/**
 * A user error: exit status 2, one error line on stderr (the last; with --json
 * the progress notes before it go to stderr too), no stack trace, no internal error.
 */
function expectUserError(r: CliResult, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines.filter((l) => l.startsWith('nst: ')).length, r.stderr).toBe(1);
  expect(r.stderr).not.toMatch(/internal error|^\s+at /m);
  expect(lines[lines.length - 1]).toMatch(/^nst: /);
  expect(lines[lines.length - 1]).toMatch(pattern);
}

describe.runIf(available(cliBuilt, 'packages/cli/dist is not built (run `npm run build`)'))('hostile inputs: nst render', () => {
  const dir = newDir('nst-hostile-');
  let content = '';
  let style = '';
  let contentBytes: Buffer;
  beforeAll(async () => {
    content = await writeTestImage(path.join(dir, 'content.png'), 32, 24, 1);
    style = await writeTestImage(path.join(dir, 'style.png'), 32, 24, 5);
    contentBytes = readFileSync(content);
  });
  const io = (out: string) => ['--content', content, '--style', style, '--out', out];

  describe("the user's files are never lost", () => {
    it('refuses an output that is an input, by path, symbolic link or hard link, and leaves the input as it was', () => {
      expectUserError(nst([...job(), ...io(content)]), /^nst: --out: '.*content\.png' would overwrite the content image/);
      const soft = path.join(dir, 'soft.png');
      const hard = path.join(dir, 'hard.png');
      symlinkSync(content, soft);
      linkSync(style, hard);
      expectUserError(nst([...job(), ...io(soft)]), /would overwrite the content image .*both lead to/);
      expectUserError(nst([...job(), ...io(hard)]), /would overwrite the style image/);
      expect(readFileSync(content).equals(contentBytes)).toBe(true);
    });

    it('refuses intermediate saves, batch outputs and checkpoints that would land on an input', () => {
      const out = path.join(dir, 'sched.png');
      const victim = path.join(dir, 'sched_2.png');
      writeFileSync(victim, readFileSync(style));
      expectUserError(
        nst([...job('--save-every', '2'), '--content', content, '--style', victim, '--out', out]),
        /intermediate save would overwrite the style image '.*sched_2\.png'/,
      );
      // Batch: the outputs are <out folder>/<content stem>.png.
      const batchDir = path.join(dir, 'batch');
      mkdirSync(batchDir);
      const a = path.join(batchDir, 'a.png');
      writeFileSync(a, contentBytes);
      expectUserError(
        nst([...job(), '--content', a, '--content', content, '--style', style, '--out', batchDir]),
        /'.*batch\/a\.png' would overwrite the content image/,
      );
      // <out>.ckpt is the style image.
      const ckptVictim = path.join(dir, 'victim.png.ckpt');
      writeFileSync(ckptVictim, readFileSync(style));
      expectUserError(
        nst([...job(), '--content', content, '--style', ckptVictim, '--out', path.join(dir, 'victim.png')]),
        /would overwrite the style image/,
      );
      // (Weight files as outputs: packages/job/test/user-files.test.ts.)
    });

    it("never deletes or overwrites a <out>.ckpt that nst did not write, nor another job's checkpoint unless told to", async () => {
      const out = path.join(dir, 'keep.png');
      writeFileSync(`${out}.ckpt`, 'my own notes');
      expectUserError(
        nst([...job(), ...io(out)]),
        /--out: cannot use '.*keep\.png\.ckpt' as this output's checkpoint: it is not an nst checkpoint/,
      );
      expect(readFileSync(`${out}.ckpt`, 'utf8')).toBe('my own notes');
      mkdirSync(path.join(dir, 'folder.png.ckpt'));
      expectUserError(nst([...job(), ...io(path.join(dir, 'folder.png'))]), /--out: cannot use '.*folder\.png\.ckpt' .*it is a folder/);
      // A valid checkpoint of another job at that path is neither resumed nor lost: the render refuses to start over it.
      const other = path.join(dir, 'other.png');
      const n = 16 * 12 * 3;
      await writeCheckpoint(`${other}.ckpt`, {
        fingerprint: 'another job',
        iteration: 1,
        images: new Float32Array(n),
        m: new Float32Array(n),
        v: new Float32Array(n),
      });
      const before = readFileSync(`${other}.ckpt`);
      expectUserError(
        nst([...job(), ...io(other)]),
        /^nst: --resume: '.*other\.png\.ckpt' holds an interrupted render of this output \(iteration 1 of 4\): --resume continues it, --fresh discards it$/,
      );
      expectUserError(
        nst([...job(), '--resume', ...io(other)]),
        /^nst: --resume: checkpoint '.*other\.png\.ckpt' belongs to a different job/,
      );
      expect(readFileSync(`${other}.ckpt`).equals(before)).toBe(true);
      // --fresh discards it on purpose; the run then finishes without one.
      const fresh = nst([...job(), '--fresh', ...io(other)]);
      expect(fresh.status, fresh.stderr).toBe(0);
      expect(existsSync(`${other}.ckpt`)).toBe(false);
      expect(existsSync(other)).toBe(true);
    });

    it('removes the temporary files a killed run of the same output left, and only those', () => {
      const out = path.join(dir, 'tmp.png');
      const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim();
      const stale = [
        `.tmp.png.${dead}.0123abcd.tmp.png`,
        `.tmp_20.png.${dead}.0123abcd.tmp.png`,
        `.tmp.png.ckpt.${dead}.0123abcd.tmp.ckpt`,
      ];
      const kept = [`.tmp.png.${process.pid}.0123abcd.tmp.png`, `.other.png.${dead}.0123abcd.tmp.png`];
      for (const n of [...stale, ...kept]) writeFileSync(path.join(dir, n), 'partial');
      const r = nst([...job(), ...io(out)]);
      expect(r.status, r.stderr).toBe(0);
      for (const n of stale) expect(existsSync(path.join(dir, n)), n).toBe(false);
      for (const n of kept) expect(existsSync(path.join(dir, n)), n).toBe(true);
      expect(r.stdout.match(/removed '.*', left behind by an earlier run that was killed/g)?.length).toBe(3);
    });
  });

  describe('never exit 0 on a broken result', () => {
    it('stops when the loss stops being finite, names the likely cause, keeps the last finite image and exits non-zero', async () => {
      const out = path.join(dir, 'nan.png');
      const r = nst([...job('--lr', '1e30', '--print-every', '1', '--iterations', '10'), ...io(out)]);
      expectUserError(
        r,
        /^nst: --lr: the loss stopped being finite at iteration 1: the learning rate is likely too high.*the last finite image \(iteration 0\) is in '.*nan_0\.png'/,
      );
      expect(existsSync(out)).toBe(false);
      const kept = await sharp(path.join(dir, 'nan_0.png')).raw().toBuffer();
      expect(kept.some((b) => b !== 0)).toBe(true); // the noise start, not a black image
      // Weights whose first layer overflows float32: the loss is not finite from the start.
      const set = randomWeights(1);
      const overflowing = path.join(dir, 'overflowing.safetensors');
      await writeCache(
        { ...set, layers: set.layers.map((l, i) => (i === 0 ? { ...l, kernel: l.kernel.map((w) => w * 1e30) } : l)) },
        overflowing,
      );
      const none = nst([...job('--weights', overflowing), ...io(path.join(dir, 'inf.png'))]);
      expectUserError(none, /at iteration 0: .*there is no finite image to keep/);
      expect(existsSync(path.join(dir, 'inf.png'))).toBe(false);
    });

    it('SIGTERM saves and exits 143; --resume compares contents, not paths; a corrupted checkpoint is refused', async () => {
      const out = path.join(dir, 'term.png');
      const run = (iterations: number, styleFile = style) => [
        ...job('--iterations', String(iterations), '--print-every', '1'),
        '--json',
        '--content',
        content,
        '--style',
        styleFile,
        '--out',
        out,
      ];
      let sent = false;
      const r = await nstAsync(run(100000), (chunk, child) => {
        if (!sent && /"iteration":2\b/.test(chunk)) {
          sent = true;
          child.kill('SIGTERM');
        }
      });
      expect(r.status, r.stderr).toBe(143);
      expect(r.stderr).toMatch(/interrupted \(SIGTERM\)/);
      const stoppedAt = jsonLines(r.stdout).find((l) => l.summary)!.iterations as number;
      expect(existsSync(out)).toBe(false);
      expect(existsSync(path.join(dir, 'term.partial.png'))).toBe(true);
      const checkpoint = readFileSync(`${out}.ckpt`);

      // Another style under the name of the first is another job.
      const original = readFileSync(style);
      await writeTestImage(style, 32, 24, 6);
      expectUserError(
        nst([...run(stoppedAt + 2), '--resume']),
        /^nst: --resume: checkpoint '.*term\.png\.ckpt' belongs to a different job \(the inputs' contents/,
      );
      writeFileSync(style, original);
      // A corrupted checkpoint is refused, and left where it is.
      const bad = Buffer.from(checkpoint);
      bad[bad.length >> 1] ^= 1;
      writeFileSync(`${out}.ckpt`, bad);
      expectUserError(
        nst([...run(stoppedAt + 2), '--resume']),
        /^nst: --resume: '.*term\.png\.ckpt' is not a valid checkpoint \(checksum mismatch/,
      );
      expect(readFileSync(`${out}.ckpt`).equals(bad)).toBe(true);
      // The same bytes under another name are the same job: it resumes, finishes and removes its checkpoint.
      writeFileSync(`${out}.ckpt`, checkpoint);
      const moved = path.join(dir, 'moved-style.png');
      writeFileSync(moved, original);
      const resumed = nst([...run(stoppedAt + 2, moved), '--resume']);
      expect(resumed.status, resumed.stderr).toBe(0);
      expect(resumed.stderr).toMatch(new RegExp(`resumed from .*term\\.png\\.ckpt at iteration ${stoppedAt}`));
      expect(existsSync(`${out}.ckpt`)).toBe(false);
      // Nothing to resume: a notice, not an error.
      const fresh = nst([...run(2), '--resume']);
      expect(fresh.status, fresh.stderr).toBe(0);
      expect(fresh.stderr).toMatch(/no checkpoint '.*term\.png\.ckpt' to resume: starting from the beginning/);
    });

    it('SIGINT saves and exits 130', async () => {
      const out = path.join(dir, 'int.png');
      let sent = false;
      const r = await nstAsync([...job('--iterations', '100000', '--print-every', '1'), '--json', ...io(out)], (chunk, child) => {
        if (!sent && /"iteration":1\b/.test(chunk)) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      expect(r.status, r.stderr).toBe(130);
      expect(existsSync(path.join(dir, 'int.partial.png')) && existsSync(`${out}.ckpt`)).toBe(true);
      expect(existsSync(out)).toBe(false);
    });
  });

  describe('memory is estimated before a run', () => {
    it('refuses sizes and style scales that cannot fit, with the estimate, the memory available and the largest size that fits', () => {
      const line =
        /needs about [\d.]+ [KMGTP]iB on the (tfjs|cpu) backend but [\d.]+ [KMGT]iB of memory is available; the largest size that fits is about \d+x\d+$/;
      // --fit fill: exactly that size (the default fits the 4:3 photo inside it, 16384x12288). --tile off: the
      // cpu and cuda backends would otherwise render it tile by tile (test/tiled-plan.test.ts).
      expectUserError(
        nst([...job('--size', '16384x16384', '--fit', 'fill', '--tile', 'off'), ...io(path.join(dir, 'huge.png'))]),
        new RegExp(`^nst: --size: 16384x16384 ${line.source}`),
      );
      // The native cpu engine's estimate too (under CI the engine must be there).
      const hasCpu = /^cpu\s+yes/m.test(nst(['backends']).stdout);
      if (process.env.CI === 'true') expect(hasCpu, 'the native cpu engine is not built').toBe(true);
      if (hasCpu)
        expectUserError(
          nst([...job('--backend', 'cpu', '--size', '16384x16384', '--fit', 'fill', '--tile', 'off'), ...io(path.join(dir, 'huge.png'))]),
          /^nst: --size: 16384x16384 needs about [\d.]+ [GTP]iB on the cpu backend .* the largest size that fits is about \d+x\d+$/,
        );
      expectUserError(
        nst([...job('--style-scale', '40', '--size', '400x300', '--tile', 'off'), ...io(path.join(dir, 'huge.png'))]),
        new RegExp(`^nst: --size: 400x300 with style images up to 16000x12000 ${line.source}`),
      );
      expectUserError(
        nst([...job('--style-scale', '1000', '--size', '400x300'), ...io(path.join(dir, 'huge.png'))]),
        /^nst: --style-scale: 1000 would resize the style images to 400000 pixels on their longest side \(at most 16384\)$/,
      );
      expect(existsSync(path.join(dir, 'huge.png'))).toBe(false);
    });
  });

  describe('a closed stdout never loses the result', () => {
    it('goes on to the end and writes the image when the reader of stdout goes away (nst render | head)', async () => {
      const out = path.join(dir, 'piped.png');
      let closed = false;
      const r = await nstAsync([...job('--iterations', '30', '--print-every', '1'), ...io(out)], (_chunk, child) => {
        if (!closed) {
          closed = true;
          child.stdout!.destroy();
        }
      });
      expect(closed).toBe(true);
      expect(r.stderr).not.toMatch(/internal error|EPIPE/);
      expect(r.status, r.stderr).toBe(0);
      expect((await sharp(out).metadata()).width).toBe(16);
    });

    it('also when stderr goes with it (nst render --json 2>&1 | head)', async () => {
      const out = path.join(dir, 'piped-both.png');
      let closed = false;
      const r = await nstAsync([...job('--iterations', '30', '--print-every', '1'), '--json', ...io(out)], (_chunk, child) => {
        if (!closed) {
          closed = true;
          child.stdout!.destroy();
          child.stderr!.destroy();
        }
      });
      expect(closed).toBe(true);
      expect(r.status).toBe(0);
      expect((await sharp(out).metadata()).width).toBe(16);
    });
  });

  describe('conditions the user caused are user errors', () => {
    it('refuses unwritable outputs before rendering, naming the path', () => {
      expectUserError(nst([...job(), ...io(path.join(dir, 'slash.png') + '/')]), /^nst: --out: '.*slash\.png\/' ends with a slash/);
      expectUserError(nst([...job(), ...io('/proc/self/nst-out.png')]), /^nst: --out: cannot write into folder '\/proc\/self'/);
      mkdirSync(path.join(dir, 'taken.png'));
      expectUserError(nst([...job(), ...io(path.join(dir, 'taken.png'))]), /^nst: --out: '.*taken\.png' is a folder/);
    });
  });

  describe('strict flags', () => {
    it('refuses a flag given twice with different values, any flag, and accepts the same value twice', () => {
      const out = path.join(dir, 'twice.png');
      for (const [flag, a, b] of [
        ['--size', '16x12', '20x20'],
        ['--iterations', '4', '5'],
        ['--backend', 'tfjs', 'cpu'],
        ['--out', out, path.join(dir, 'twice2.png')],
      ]) {
        const r = nst([
          ...job(flag, a),
          '--content',
          content,
          '--style',
          style,
          ...(flag === '--out' ? [] : ['--out', out]),
          flag,
          b,
          ...(flag === '--out' ? ['--out', out] : []),
        ]);
        expectUserError(r, new RegExp(`^nst: ${flag}: given twice with different values \\('.*' and '.*'\\)`));
      }
      // -n is --iterations.
      expectUserError(nst([...job(), '-n', '7', ...io(out)]), /^nst: --iterations: given twice with different values \('4' and '7'\)/);
      const same = nst([...job('--size', '16x12'), '--size', '16x12', ...io(out)]);
      expect(same.status, same.stderr).toBe(0);
    });

    it('says when --gpu or --precision cannot apply: an error with an explicit cpu or tfjs backend, a notice when auto chose no GPU', () => {
      expectUserError(
        nst([...job('--gpu', '1'), ...io(path.join(dir, 'gpu.png'))]),
        /^nst: --backend: --gpu applies to the cuda backend only, not tfjs/,
      );
      expectUserError(
        nst([...job('--precision', 'tf32', '--gpu', '1'), ...io(path.join(dir, 'gpu.png'))]),
        /--precision applies to the cuda and cpu backends only, --gpu applies to the cuda backend only, not tfjs/,
      );
      const hasCuda = /^cuda\s+yes/m.test(nst(['backends']).stdout);
      if (hasCuda) return; // auto picks cuda there: both flags apply
      const r = nst([...job('--backend', 'auto', '--gpu', '0'), ...io(path.join(dir, 'gpu.png'))]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/note: --gpu ignored: the (cpu|tfjs) backend runs without a GPU/);
      // A precision the engine auto chose does not implement: its own choice runs, and a notice says so.
      const tf32 = nst([...job('--backend', 'auto', '--precision', 'tf32'), ...io(path.join(dir, 'gpu.png'))]);
      expect(tf32.status, tf32.stderr).toBe(0);
      expect(tf32.stdout).toMatch(
        /note: --precision (tf32 ignored: the cpu engine implements fp32, bf16; it runs its own choice \(auto\)|ignored: the tfjs backend runs without a GPU, in fp32)/,
      );
    });
  });

  // Lossless .tif: packages/job/test/image.test.ts (noise round-trips exactly).
});
