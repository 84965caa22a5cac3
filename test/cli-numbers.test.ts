/**
 * Numbers the engines cannot take (issue 21): loss weights that overflow
 * float32 were an "internal error" (exit 1), alpha = beta = 0 and an image
 * that never moved finished "done". Each is now a one-line user error naming
 * the flag, exit 2, and no output file.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { available, cliBuilt, newDir, nst, writeTestImage } from '@nst/test-helpers';

describe.runIf(available(cliBuilt, 'the CLI is not built (npm run build)'))('numbers the engines cannot take', () => {
  const dir = newDir('nst-numbers-');
  const content = path.join(dir, 'content.png');
  const style = path.join(dir, 'style.png');
  beforeAll(async () => {
    await Promise.all([writeTestImage(content, 24, 16, 1), writeTestImage(style, 24, 16, 4)]);
  });
  const render = (out: string, ...over: string[]) => {
    const flags: Record<string, string> = {
      '--weights': 'random:1',
      '--size': '24x16',
      '--style-layers': 'conv1_1',
      '--content-layers': 'conv1_2',
      '--iterations': '3',
      '--backend': 'cpu',
    };
    for (let i = 0; i < over.length; i += 2) flags[over[i]] = over[i + 1];
    return nst(['render', '--content', content, '--style', style, '--out', path.join(dir, out), ...Object.entries(flags).flat()]);
  };
  const refused = (r: ReturnType<typeof nst>, out: string, line: RegExp) => {
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(line);
    expect(r.stderr).not.toMatch(/internal error|^\s+at /m);
    expect(existsSync(path.join(dir, out))).toBe(false);
  };

  it('refuses loss weights beyond float32, alone or multiplied, naming the flag', () => {
    refused(
      render('a.png', '--beta', '1e308'),
      'a.png',
      /^nst: --beta: 1e\+308 is too large \(at most 1000000000000: the engines compute in float32\)$/,
    );
    refused(
      render('b.png', '--style-layers', 'conv1_1:1e308'),
      'b.png',
      /^nst: --style-layers: the weight 1e\+308 of conv1_1 is too large/,
    );
    refused(
      render('c.png', '--beta', '1e8', '--style-layers', 'conv1_1:1e5'),
      'c.png',
      /^nst: --beta: 100000000 times the weight 100000 of conv1_1 is too large/,
    );
  });

  it('refuses alpha = beta = 0', () => {
    refused(render('d.png', '--alpha', '0', '--beta', '0'), 'd.png', /^nst: --beta: alpha and beta are both 0/);
  });

  it('refuses an image that did not move, rather than write it as a result', () => {
    refused(
      render('e.png', '--lr', '1e-30'),
      'e.png',
      /^nst: --lr: the image did not change in 3 iterations: the learning rate is too small to move a pixel/,
    );
    // The control: the same run with the notebook's rate writes its image.
    expect(render('f.png').status).toBe(0);
    expect(existsSync(path.join(dir, 'f.png'))).toBe(true);
  });
});
