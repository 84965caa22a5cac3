import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { UserError, type WeightSet } from '@nst/core';
import { isInitKind, JOB_FIELDS, JOB_OPTIONS, type JobConfig } from './options.js';
import type { ScaleStep, Size } from './schedule.js';

/**
 * A digest of what defines a job: the options (the option table says which
 * count), the input images by content (SHA-256 of their bytes, not their
 * paths: a content image replaced under the same name is another job, the
 * same files moved elsewhere the same job), the weights' identity and the
 * output size. Two kinds:
 *  - 'run': the optimisation's path, which its checkpoints carry (a
 *    checkpoint of another run is never resumed; one of this run may be
 *    resumed with more iterations or another bit depth);
 *  - 'result': everything that changes the picture written.
 */
export async function jobFingerprint(
  job: JobConfig,
  weights: Pick<WeightSet, 'sha256' | 'source'>,
  size: Size,
  kind: 'run' | 'result',
): Promise<string> {
  const described: Record<string, unknown> = {};
  for (const field of JOB_FIELDS) {
    const spec = JOB_OPTIONS[field];
    if (spec.result === false || (kind === 'run' && spec.resumable)) continue;
    const value = job[field];
    if (spec.paths && value !== undefined)
      described[field] = Array.isArray(value)
        ? await Promise.all(value.map((f: string) => fileDigest(f, field)))
        : isInitKind(value as string)
          ? value
          : await fileDigest(value as string, field);
    else described[field] = value ?? null;
  }
  return sha256(JSON.stringify({ kind, job: described, weights: weights.sha256 ?? weights.source, size }));
}

/** The fingerprint of scale `index` of a run: its checkpoints resume only that scale. */
export function stepFingerprint(runFingerprint: string, index: number, step: ScaleStep): string {
  return sha256(JSON.stringify({ run: runFingerprint, index, size: step.size }));
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** SHA-256 of a file's bytes, streamed. */
async function fileDigest(file: string, field: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (e) {
    throw new UserError(`cannot read '${file}' (${(e as NodeJS.ErrnoException).code})`, { code: 'unreadable', field });
  }
  return hash.digest('hex');
}
