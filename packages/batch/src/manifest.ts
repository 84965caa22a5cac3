import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { UserError } from '@nst/core';
import { isInitKind, JOB_OPTIONS, jobFromOptions, optionsFor, type JobConfig, type JobOptionValues, type OptionValue } from '@nst/job';
import { parseCsv } from './csv.js';

/** One line of a manifest: a job, or the reason it cannot be one. */
export interface ManifestJob {
  /** The job's name in results and progress: its `id` key, else `line N`. */
  readonly id: string;
  readonly line: number;
  readonly config?: JobConfig;
  /** Why the line is not a job (the key at fault in `field`, camelCase). */
  readonly error?: UserError;
}

/** The job fields a manifest line may set: the option table's for manifests. */
const MANIFEST_FIELDS = new Set<string>(optionsFor('manifest'));
/** Why the other job options are not manifest keys. */
const NOT_IN_MANIFESTS: Readonly<Record<string, string>> = {
  weights: 'is set once for the whole batch (nst batch --weights), not per job',
  resume: 'is not a manifest key (nst batch always resumes a job that has a checkpoint)',
};
/** Bounds a manifest before reading it (a million short lines). */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export interface ManifestOptions {
  /** Fills options a job left out before it is parsed (the weight set's own loss layers: withWeightDefaults). */
  readonly defaults?: (values: JobOptionValues) => JobOptionValues;
}

/**
 * Reads a JSONL or CSV manifest (by extension: .csv is CSV, anything else
 * JSON Lines): one render job per line, keys as the CLI's long options
 * (`style-layers`), relative paths relative to the manifest's folder. A
 * line that is not a valid job becomes a job with its error: it fails alone.
 */
export async function readManifest(file: string, options: ManifestOptions = {}): Promise<ManifestJob[]> {
  let stat;
  try {
    stat = await fs.stat(file);
  } catch {
    throw new UserError(`no such file '${file}'`, { code: 'not-found' });
  }
  if (!stat.isFile()) throw new UserError(`'${file}' is not a file`, { code: 'unreadable' });
  if (stat.size > MAX_MANIFEST_BYTES) throw new UserError(`'${file}' is larger than ${MAX_MANIFEST_BYTES} bytes`, { code: 'too-large' });
  const text = await fs.readFile(file, 'utf8');
  const base = path.dirname(path.resolve(file));
  const records = file.toLowerCase().endsWith('.csv') ? csvRecords(text, file) : jsonlRecords(text);
  const jobs = records.map((r) =>
    'error' in r ? { id: `line ${r.line}`, line: r.line, error: r.error } : manifestJob(r.line, r.values, base, options.defaults),
  );
  const ids = new Set<string>();
  return jobs.map((j) => {
    if (ids.has(j.id))
      return { ...j, config: undefined, error: new UserError(`the id '${j.id}' is used twice`, { code: 'conflict', field: 'id' }) };
    ids.add(j.id);
    return j;
  });
}

type RawRecord = { line: number; values: Record<string, unknown> } | { line: number; error: UserError };

function jsonlRecords(text: string): RawRecord[] {
  const out: RawRecord[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const t = raw.trim();
    if (t === '' || t.startsWith('#')) return;
    try {
      const v = JSON.parse(t) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
      out.push({ line, values: v as Record<string, unknown> });
    } catch (e) {
      out.push({ line, error: new UserError(`line ${line} is not a JSON object (${(e as Error).message.split('\n')[0]})`) });
    }
  });
  return out;
}

function csvRecords(text: string, file: string): RawRecord[] {
  const rows = parseCsv(text);
  if (rows.length === 0) throw new UserError(`'${file}' has no header row`);
  const header = rows[0].fields.map((h) => h.trim());
  return rows.slice(1).map(({ line, fields }) => {
    if (fields.length > header.length)
      return { line, error: new UserError(`line ${line} has ${fields.length} fields, the header ${header.length}`) };
    const values: Record<string, unknown> = {};
    // An empty cell means "not given" (the default).
    header.forEach((h, k) => {
      if (fields[k] !== undefined && fields[k].trim() !== '') values[h] = fields[k].trim();
    });
    return { line, values };
  });
}

/** 'style-layers' -> 'styleLayers' (the inverse of core's kebabCase). */
export function camelCase(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function manifestJob(line: number, raw: Record<string, unknown>, base: string, defaults = (v: JobOptionValues) => v): ManifestJob {
  const id = raw.id === undefined ? `line ${line}` : String(raw.id);
  try {
    const values: Record<string, JobOptionValues[string]> = {};
    for (const [key, value] of Object.entries(raw)) {
      if (key === 'id') continue;
      const field = camelCase(key);
      if (field in JOB_OPTIONS && !MANIFEST_FIELDS.has(field))
        throw new UserError(NOT_IN_MANIFESTS[field] ?? 'is not a manifest key', { code: 'unsupported', field });
      values[field] = JOB_OPTIONS[field as keyof JobConfig]?.paths ? resolvePaths(field, value, base) : optionValue(field, value);
    }
    return { id, line, config: jobFromOptions(defaults(values)) };
  } catch (e) {
    if (e instanceof UserError) return { id, line, error: e };
    throw e;
  }
}

function optionValue(field: string, value: unknown): OptionValue {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  // A list of numbers (style-blend-weights) is written as JSON would; the parser takes it as text.
  if (Array.isArray(value) && value.every((v) => typeof v === 'number' || typeof v === 'string')) return value.join(',');
  throw new UserError(`expected text, a number or true/false, got ${JSON.stringify(value)}`, { field });
}

/** A path value, or a list of them ('a.jpg,b.jpg' or a JSON list), resolved against the manifest's folder. */
function resolvePaths(field: string, value: unknown, base: string): string | string[] {
  const items = Array.isArray(value) ? value : [value];
  if (items.some((v) => typeof v !== 'string' || v === '')) throw new UserError('expected a file path', { field });
  const resolve = (p: string) => path.resolve(base, p);
  if (field === 'init' && isInitKind(items[0] as string)) return items[0] as string;
  if (field !== 'style') {
    if (items.length > 1) throw new UserError('expected one file, got a list', { field });
    return resolve(items[0] as string);
  }
  // 'a.jpg,b.jpg' is two styles unless a file of that very name exists (as for the CLI).
  return (items as string[])
    .flatMap((s) =>
      existsSync(resolve(s))
        ? [s]
        : s
            .split(',')
            .map((x) => x.trim())
            .filter(Boolean),
    )
    .map(resolve);
}
