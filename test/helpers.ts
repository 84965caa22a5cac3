import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** ../shared beside the checkout (present for developers and CI, absent for users). */
export const sharedDir = path.resolve(repoRoot, '..', 'shared');
export const sharedWeights = path.join(sharedDir, 'weights', 'vgg19-keras-blocks1-3');
export const sharedImages = path.join(sharedDir, 'images');
export const hasSharedWeights = existsSync(path.join(sharedWeights, 'model.json'));
export const hasSharedImages = existsSync(path.join(sharedImages, 'tubingen.jpg'));
export const nstBin = path.join(repoRoot, 'packages', 'cli', 'bin', 'nst.js');
export const cliBuilt = existsSync(path.join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));

export function tempDir(prefix = 'nst-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI synchronously. */
export function nst(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [nstBin, ...args], {
    cwd: repoRoot,
    env: { ...process.env, NST_CACHE_DIR: path.join(tmpdir(), 'nst-test-empty-cache'), ...env },
    encoding: 'utf8',
    timeout: 100_000, // under vitest's 120 s test timeout, so that a hang is reported with its stderr
  });
  const killed = r.signal ? `\n[nst killed by ${r.signal}${r.error ? `: ${r.error.message}` : ''}]` : '';
  return { status: r.status, stdout: r.stdout, stderr: r.stderr + killed };
}

/** Starts the CLI; resolves when it exits. `onStdout` sees output as it arrives. */
export function nstAsync(args: string[], onStdout?: (chunk: string, child: ReturnType<typeof spawn>) => void): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [nstBin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, NST_CACHE_DIR: path.join(tmpdir(), 'nst-test-empty-cache') },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
      onStdout?.(c, child);
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
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
      data[i + 2] = Math.round((255 * y) / height) ^ (seed * 37 & 0xff);
    }
  await sharp(data, { raw: { width, height, channels: 3 } }).toFile(file);
  return file;
}

export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export function gitLsFiles(): string[] {
  return spawnSync('git', ['ls-files'], { cwd: repoRoot, encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
}
