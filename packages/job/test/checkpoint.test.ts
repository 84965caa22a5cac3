import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rng } from '@nst/core';
import { inspectCheckpoint, readCheckpoint, writeCheckpoint } from '@nst/job';

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

describe('checkpoint integrity', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-ck2-'));
  const write = async (name: string) => {
    const rng = new Rng(5);
    const arr = () => rng.fillNormal(new Float32Array(64), 10);
    const file = path.join(dir, name);
    await writeCheckpoint(file, { fingerprint: 'f'.repeat(64), iteration: 7, images: arr(), m: arr(), v: arr() });
    return file;
  };

  it('refuses a checkpoint with any one byte flipped (header, images, moments, checksum)', async () => {
    const file = await write('flip.ckpt');
    const good = readFileSync(file);
    // Every 97th byte, and the first and last of each region.
    const positions = new Set([12, 20, good.length - 1, good.length - 32, good.length - 33]);
    for (let i = 12; i < good.length; i += 97) positions.add(i);
    for (const at of positions) {
      const bad = Buffer.from(good);
      bad[at] ^= 0x10;
      writeFileSync(file, bad);
      await expect(readCheckpoint(file), `byte ${at}`).rejects.toThrow(/^resume: .*not a valid checkpoint/);
    }
    writeFileSync(file, good);
    expect((await readCheckpoint(file))!.iteration).toBe(7);
  });

  it('refuses a truncated or padded checkpoint, and one of another size than the job', async () => {
    const file = await write('len.ckpt');
    const good = readFileSync(file);
    writeFileSync(file, good.subarray(0, good.length - 1));
    await expect(readCheckpoint(file)).rejects.toThrow(/truncated or padded/);
    writeFileSync(file, Buffer.concat([good, Buffer.alloc(1)]));
    await expect(readCheckpoint(file)).rejects.toThrow(/truncated or padded/);
    writeFileSync(file, good);
    await expect(readCheckpoint(file, 65)).rejects.toThrow(/holds 64 values per image array, this job 65/);
  });

  it('refuses the old format (no checksum) with a message saying so', async () => {
    const file = path.join(dir, 'old.ckpt');
    writeFileSync(file, Buffer.concat([Buffer.from('NSTCKPT1'), Buffer.alloc(200)]));
    await expect(readCheckpoint(file)).rejects.toThrow(/^resume: .* older nst, without a checksum: delete it/);
  });

  it('tells a checkpoint from a folder, a device and any other file without reading them whole', async () => {
    const file = await write('kind.ckpt');
    expect(await inspectCheckpoint(file)).toEqual({ kind: 'checkpoint', fingerprint: 'f'.repeat(64), iteration: 7, length: 64 });
    expect(await inspectCheckpoint(path.join(dir, 'none.ckpt'))).toEqual({ kind: 'none' });
    expect((await inspectCheckpoint(dir)).kind).toBe('other');
    expect(await inspectCheckpoint('/dev/zero')).toEqual({ kind: 'other', why: 'it is not a regular file' });
    writeFileSync(path.join(dir, 'user.ckpt'), 'my notes');
    expect(await inspectCheckpoint(path.join(dir, 'user.ckpt'))).toEqual({ kind: 'other', why: 'it is not an nst checkpoint' });
    await expect(readCheckpoint(dir)).rejects.toThrow(/it is a folder/);
  });
});
