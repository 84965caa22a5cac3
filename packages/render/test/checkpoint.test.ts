import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rng } from '@nst/core';
import { readCheckpoint, writeCheckpoint } from '@nst/render';

describe('checkpoints', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-ck-'));
  it('round-trips images and Adam moments bit-exactly', async () => {
    const rng = new Rng(3);
    const arr = () => rng.fillNormal(new Float32Array(101), 10);
    const ck = { fingerprint: 'abc', iteration: 40, images: arr(), m: arr(), v: arr() };
    const file = path.join(dir, 'a.ckpt');
    await writeCheckpoint(file, ck);
    const back = await readCheckpoint(file);
    expect(back!.iteration).toBe(40);
    expect(back!.fingerprint).toBe('abc');
    expect(Array.from(back!.images)).toEqual(Array.from(ck.images));
    expect(Array.from(back!.v)).toEqual(Array.from(ck.v));
    expect(await readCheckpoint(path.join(dir, 'none.ckpt'))).toBeUndefined();
  });
  it('rejects corrupt files with a one-line error', async () => {
    const file = path.join(dir, 'bad.ckpt');
    writeFileSync(file, 'NSTCKPT2garbage');
    await expect(readCheckpoint(file)).rejects.toThrow(/^resume: '.*bad\.ckpt' is not a valid checkpoint/);
  });
});
