import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from './environment.js';

export const nstBin = path.join(repoRoot, 'packages', 'cli', 'bin', 'nst.js');
/** The CLI tests run the built `nst` (turbo builds it before `vitest run`). */
export const cliBuilt = existsSync(path.join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** An empty weight cache, so that no test depends on what the developer has installed. */
const emptyCache = path.join(tmpdir(), 'nst-test-empty-cache');

/** Runs the built CLI synchronously. */
export function nst(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [nstBin, ...args], {
    cwd: repoRoot,
    env: { ...process.env, NST_CACHE_DIR: emptyCache, ...env },
    encoding: 'utf8',
    timeout: 100_000, // under vitest's 120 s test timeout, so that a hang is reported with its stderr
  });
  const killed = r.signal ? `\n[nst killed by ${r.signal}${r.error ? `: ${r.error.message}` : ''}]` : '';
  return { status: r.status, stdout: r.stdout, stderr: r.stderr + killed };
}

/** Starts the CLI; resolves when it exits. `onStdout` sees output as it arrives. */
export function nstAsync(
  args: string[],
  onStdout?: (chunk: string, child: ReturnType<typeof spawn>) => void,
  env: Record<string, string> = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [nstBin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, NST_CACHE_DIR: emptyCache, ...env },
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

/** The objects of `nst render --json`'s stdout, one a line. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
