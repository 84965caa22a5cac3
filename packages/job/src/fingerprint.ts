import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { UserError, type WeightSet } from '@nst/core';
import { JOB_FIELDS, JOB_OPTIONS, namesFile, omittedFromSettings, type JobConfig } from './options.js';
import type { ScaleStep, Size } from './schedule.js';

/**
 * The SHA-256 of each input file of a job, by job field, in the order the
 * job names them; a value that names no file (a mask list's `none`) stands
 * as itself in its place.
 */
export type InputDigests = Readonly<Partial<Record<keyof JobConfig, readonly string[]>>>;

/** The files a job reads by content (its images, not the output), hashed once per job. */
export async function inputDigests(job: JobConfig): Promise<InputDigests> {
  const digests: Partial<Record<keyof JobConfig, string[]>> = {};
  for (const field of JOB_FIELDS) {
    const spec = JOB_OPTIONS[field];
    const value = job[field];
    if (!spec.paths || spec.result === false || value === undefined) continue;
    const files = (Array.isArray(value) ? value : [value]).filter((f: string) => Array.isArray(value) || namesFile(field, f));
    digests[field] = await Promise.all(files.map((f: string) => (namesFile(field, f) ? fileDigest(f, field) : f)));
  }
  return digests;
}

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
export function jobFingerprint(
  job: JobConfig,
  weights: Pick<WeightSet, 'sha256' | 'source'>,
  size: Size,
  kind: 'run' | 'result',
  digests: InputDigests,
): string {
  const described: Record<string, unknown> = {};
  for (const field of JOB_FIELDS) {
    const spec = JOB_OPTIONS[field];
    if (spec.result === false || (kind === 'run' && spec.resumable)) continue;
    const value = job[field];
    if (omittedFromSettings(field, value)) continue;
    if (spec.paths && value !== undefined) {
      const files = digests[field] ?? [];
      described[field] = Array.isArray(value) ? files : namesFile(field, value as string) ? files[0] : value;
    } else described[field] = value ?? null;
  }
  return sha256(JSON.stringify({ kind, job: described, weights: weightsIdentity(weights), size }));
}

/** What identifies a weight set: the SHA-256 of its file, else its source (`random:3`). */
export function weightsIdentity(weights: Pick<WeightSet, 'sha256' | 'source'>): string {
  return weights.sha256 ?? weights.source;
}

/** The fingerprint of scale `index` of a run: its checkpoints resume only that scale. */
export function stepFingerprint(runFingerprint: string, index: number, step: ScaleStep): string {
  return sha256(JSON.stringify({ run: runFingerprint, index, size: step.size }));
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** SHA-256 of a file's bytes, streamed. */
export async function fileDigest(file: string, field: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (e) {
    throw new UserError(`cannot read '${file}' (${(e as NodeJS.ErrnoException).code})`, { code: 'unreadable', field });
  }
  return hash.digest('hex');
}
