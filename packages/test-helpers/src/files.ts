import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { repoRoot } from './environment.js';

/** A fresh temporary folder and the function that removes it. */
export function tempDir(prefix = 'nst-test-'): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { path: dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

// newDir's folders go when the test process ends (a hook of the test runner would tie this module to
// it, and bench/gpu's bundle of the native tests runs without vitest).
const cleanups: Array<() => void> = [];
process.on('exit', () => cleanups.splice(0).forEach((cleanup) => cleanup()));

/** A fresh temporary folder, removed when the test process ends (callable inside a test too). */
export function newDir(prefix?: string): string {
  const t = tempDir(prefix);
  cleanups.push(t.cleanup);
  return t.path;
}

/** A small synthetic picture: smooth gradients plus a few shapes, so that content layers see structure. */
export async function writeTestImage(file: string, width: number, height: number, seed: number): Promise<string> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = 3 * (y * width + x);
      const stripes = Math.sin((x + seed * 7) / (3 + seed)) * Math.cos(y / (4 + seed));
      data[i] = Math.round(127 + 120 * stripes);
      data[i + 1] = Math.round((255 * x) / width);
      data[i + 2] = Math.round((255 * y) / height) ^ ((seed * 37) & 0xff);
    }
  await sharp(data, { raw: { width, height, channels: 3 } }).toFile(file);
  return file;
}

export function gitLsFiles(): string[] {
  return spawnSync('git', ['ls-files'], { cwd: repoRoot, encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
}
