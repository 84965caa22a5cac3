import { readFileSync } from 'node:fs';
import os from 'node:os';
import { formatBytes, largestFittingSize, UserError, type Backend, type MemoryShape } from '@nst/core';

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
 * the memory available, with one line: the estimate, what is available and
 * the largest size that fits. Backends whose memory is on a device they check
 * themselves (estimateMemory undefined) pass.
 */
export function checkMemory(
  backend: Pick<Backend, 'estimateMemory' | 'name'>,
  shape: MemoryShape,
  available = hostMemoryAvailable(),
): void {
  const needed = backend.estimateMemory(shape);
  if (needed === undefined || needed <= available) return;
  const estimate = (s: MemoryShape) => backend.estimateMemory(s) ?? 0;
  const fit = largestFittingSize(shape, estimate, available);
  const styles = shape.styleSizes.some((s) => s.width !== shape.width || s.height !== shape.height)
    ? ` with style images up to ${Math.max(...shape.styleSizes.map((s) => s.width))}x${Math.max(...shape.styleSizes.map((s) => s.height))}`
    : '';
  throw new UserError(
    `${shape.width}x${shape.height}${shape.batch > 1 ? ` batch ${shape.batch}` : ''}${styles} needs about ${formatBytes(needed)} on the ${backend.name} backend ` +
      `but ${formatBytes(available)} of memory is available; ` +
      (fit ? `the largest size that fits is about ${fit.width}x${fit.height}` : 'not even the smallest size fits'),
    { code: 'too-large', field: 'size' },
  );
}
