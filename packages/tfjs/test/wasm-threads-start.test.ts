/**
 * Starting wasm's thread pool under Node (src/wasm-threads.ts), each case in
 * its own process (fixtures/start-wasm-threads.mjs): a start that goes wrong
 * falls back to one thread, says why, computes correctly, and the process
 * still ends by itself. Before the pool's scripts were written once, before
 * any worker exists, the "slow-writes" case exited mid-start with code 13 (as
 * two CI renders did): a worker had read an empty script and exited silently.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'start-wasm-threads.mjs');

interface Started {
  kind: string;
  detail: string;
  threads: number;
  seconds: number;
  correct: boolean;
}

function start(mode: string): Started {
  const r = spawnSync(process.execPath, [fixture, mode], { encoding: 'utf8', timeout: 60_000 });
  // Exit code 0 and no signal: it ended by itself, with no worker left holding it open.
  expect({ status: r.status, signal: r.signal }, r.stderr).toEqual({ status: 0, signal: null });
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Started;
}

describe('wasm thread pool start (2 threads)', () => {
  it('starts 2 threads', () => {
    const s = start('none');
    expect(s).toMatchObject({ kind: 'wasm', detail: 'tfjs (wasm, 2 threads)', threads: 2, correct: true });
  });

  it('starts 2 threads even when writing the worker script is slow', () => {
    const s = start('slow-writes');
    expect(s).toMatchObject({ detail: 'tfjs (wasm, 2 threads)', threads: 2, correct: true });
  });

  it('falls back to 1 thread, and says why, when a worker exits before the pool has loaded', () => {
    const s = start('worker-exits');
    expect(s.threads).toBe(1);
    expect(s.detail).toMatch(
      /^tfjs \(wasm, 1 thread; 2 threads did not start: wasm thread worker 3 of the pool exited \(code \d+\) before the pool had loaded\)$/,
    );
    expect(s.correct).toBe(true);
  });

  it('falls back to 1 thread when the pool does not load in time', () => {
    const s = start('worker-silent');
    expect(s.threads).toBe(1);
    expect(s.detail).toBe('tfjs (wasm, 1 thread; 2 threads did not start: the wasm thread pool did not load within 3 s)');
    expect(s.seconds).toBeGreaterThanOrEqual(3);
    expect(s.correct).toBe(true);
  });
});
