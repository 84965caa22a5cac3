import { readFileSync } from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { memoryRefusal, type Backend, type MemoryShape } from '@nst/core';

/**
 * Host memory this process may still use: the free memory the kernel reports
 * (os.freemem: MemAvailable), capped by the cgroup's limit less its current
 * use when the process runs in a memory-limited cgroup (containers, CI).
 */
export function hostMemoryAvailable(): number {
  let available = os.freemem();
  const cgroup = cgroupHeadroom();
  if (cgroup !== undefined) available = Math.min(available, cgroup);
  return available;
}

function cgroupHeadroom(): number | undefined {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  // cgroup v2, then v1. 'max' (v2) or a huge number (v1) means no limit.
  for (const [limitFile, usageFile] of [
    ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory.current'],
    ['/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory/memory.usage_in_bytes'],
  ]) {
    const limit = read(limitFile);
    if (limit === undefined) continue;
    if (!/^\d+$/.test(limit) || Number(limit) >= 2 ** 60) return undefined;
    const usage = Number(read(usageFile) ?? 0);
    return Math.max(0, Number(limit) - (Number.isFinite(usage) ? usage : 0));
  }
  return undefined;
}

/**
 * Refuses, before anything is allocated, a job whose estimated peak exceeds
 * the memory available where the backend computes (the device's free memory,
 * else the host's), with one line: the estimate, what is available and the
 * largest size that fits.
 */
export function checkMemory(
  backend: Pick<Backend, 'estimateMemory' | 'deviceMemoryAvailable' | 'name'>,
  shape: MemoryShape,
  available = backend.deviceMemoryAvailable?.() ?? hostMemoryAvailable(),
): void {
  const needed = backend.estimateMemory(shape);
  if (needed <= available) return;
  throw memoryRefusal(backend.name, shape, needed, available, (s) => backend.estimateMemory(s));
}

let collect: (() => void) | undefined;

/**
 * Frees now the memory of large JavaScript arrays the caller has just
 * dropped (a render's inputs once its session holds its own copies). V8
 * frees an ArrayBuffer's memory only when a garbage collection finds it
 * unreachable, and a render allocates too few JavaScript objects for one to
 * come soon. One full collection, tens of milliseconds; only for `bytes` of
 * 256 MiB and more. (It frees only what nothing reaches: see startSession in
 * loop.ts and loadGroupInputs in pipeline.ts for what kept the inputs
 * reachable before.)
 */
export function releaseDropped(bytes: number): void {
  if (bytes < 256 * 2 ** 20) return;
  if (!collect) {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as () => void;
  }
  collect();
}
