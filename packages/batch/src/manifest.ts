import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { UserError } from '@nst/core';
import { JOB_OPTIONS, jobFromOptions, namesFile, optionsFor, type JobConfig, type JobOptionValues, type OptionValue } from '@nst/job';
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
  fresh: 'is not a manifest key (nst batch --force renders every job again from the beginning)',
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
  return manifestJobs(await loadManifest(file), options);
}

/** A manifest's lines, read but not yet parsed as jobs (that needs the weights: ManifestOptions.defaults). */
export interface LoadedManifest {
  readonly records: readonly RawRecord[];
  /** The folder relative paths are resolved against. */
  readonly base: string;
}

/**
 * Reads a manifest's lines: every error of the file itself (missing, too
 * large, no header, an unknown separator) surfaces here, before anything
 * heavier (weights, backend) is loaded.
 */
export async function loadManifest(file: string): Promise<LoadedManifest> {
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
  return { base, records: file.toLowerCase().endsWith('.csv') ? csvRecords(text, file) : jsonlRecords(text) };
}

/** The jobs of a loaded manifest, each parsed and checked as `nst render` checks its flags. */
export function manifestJobs(manifest: LoadedManifest, options: ManifestOptions = {}): ManifestJob[] {
  return uniqueIds(
    manifest.records.map((r) =>
      'error' in r
        ? { id: `line ${r.line}`, line: r.line, error: r.error }
        : manifestJob(r.line, r.values, manifest.base, options.defaults),
    ),
  );
}

/** A job whose id an earlier one has fails alone, naming the id. */
function uniqueIds(jobs: readonly ManifestJob[]): ManifestJob[] {
  const ids = new Set<string>();
  return jobs.map((j) => {
    if (ids.has(j.id))
      return { ...j, config: undefined, error: new UserError(`the id '${j.id}' is used twice`, { code: 'conflict', field: 'id' }) };
    ids.add(j.id);
    return j;
  });
}

export type RawRecord = { line: number; values: Record<string, unknown> } | { line: number; error: UserError };

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

/**
 * A CSV manifest's records. Spreadsheets set to a language that writes
 * decimal commas save CSV with semicolons: a header row with semicolons and
 * no comma is read that way (the two characters are swapped, parsed as
 * comma-separated, and swapped back in every field, which is exact since
 * quoting does not involve either).
 */
function csvRecords(text: string, file: string): RawRecord[] {
  const first = text.split(/\r?\n/, 1)[0];
  const semicolons = first.includes(';') && !first.includes(',');
  const swap = (t: string) => t.replace(/[,;]/g, (c) => (c === ',' ? ';' : ','));
  const rows = semicolons ? parseCsv(swap(text)).map((r) => ({ line: r.line, fields: r.fields.map(swap) })) : parseCsv(text);
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

/**
 * A path value, or a list of them ('a.jpg,b.jpg' or a JSON list: style and
 * the mask lists), resolved against the manifest's folder; what names no
 * file (init's kinds, a mask list's none) stays as it is.
 */
function resolvePaths(field: string, value: unknown, base: string): string | string[] {
  const items = Array.isArray(value) ? value : [value];
  if (items.some((v) => typeof v !== 'string' || v === '')) throw new UserError('expected a file path', { field });
  const resolve = (p: string) => (namesFile(field, p.trim()) ? path.resolve(base, p) : p.trim());
  if (!JOB_OPTIONS[field as keyof JobConfig].repeatable || field === 'content') {
    if (items.length > 1) throw new UserError('expected one file, got a list', { field });
    return resolve(items[0] as string);
  }
  // 'a.jpg,b.jpg' is two styles unless a file of that very name exists (as for the CLI).
  return (items as string[])
    .flatMap((s) =>
      existsSync(path.resolve(base, s))
        ? [s]
        : s
            .split(',')
            .map((x) => x.trim())
            .filter(Boolean),
    )
    .map(resolve);
}

/** The files folder mode takes as photos and paintings. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.avif', '.gif'] as const;

/** Folder mode: every photo with every style, one job each, into `<out>/<photo>-<style>.png` (no manifest). */
export interface FolderSources {
  /** Folders (their images, by name) or image files. */
  readonly photos: readonly string[];
  readonly styles: readonly string[];
  /** The folder the results go to. */
  readonly out: string;
}

/**
 * Folder mode's photos and paintings, listed (absolute paths, by name) and
 * checked before anything heavier: a folder without images, or an output
 * folder among the inputs' (a re-run would take the results for photos), is
 * refused.
 */
export async function listFolderSources(sources: FolderSources): Promise<FolderSources> {
  const photos = await imagesOf(sources.photos, 'photos');
  const styles = await imagesOf(sources.styles, 'styles');
  const out = path.resolve(sources.out);
  for (const [field, files] of [
    ['photos', photos],
    ['styles', styles],
  ] as const)
    if (files.some((f) => path.dirname(f) === out))
      throw new UserError(`the results would go among the ${field} ('${out}'): choose another output folder`, {
        code: 'conflict',
        field: 'out',
      });
  return { photos, styles, out };
}

/**
 * The jobs of folder mode (sources listed by listFolderSources), named
 * `<photo>-<style>` by the files' stems, each parsed as a manifest line is
 * (ManifestOptions.defaults fills the rest).
 */
export function folderJobs(sources: FolderSources, options: ManifestOptions = {}): ManifestJob[] {
  const { photos, styles, out } = sources;
  const stem = (file: string) => path.basename(file, path.extname(file));
  const jobs: ManifestJob[] = [];
  for (const photo of photos)
    for (const style of styles) {
      const id = `${stem(photo)}-${stem(style)}`;
      jobs.push(manifestJob(jobs.length + 1, { id, content: photo, style, out: path.join(out, `${id}.png`) }, out, options.defaults));
    }
  return uniqueIds(jobs);
}

/** The image files `sources` name (a folder: its images, by name), absolute; none is an error naming `field`. */
async function imagesOf(sources: readonly string[], field: string): Promise<string[]> {
  const files: string[] = [];
  for (const source of sources) {
    const st = await fs.stat(source).catch(() => undefined);
    if (!st) throw new UserError(`no such file or folder '${source}'`, { code: 'not-found', field });
    if (!st.isDirectory()) {
      files.push(path.resolve(source));
      continue;
    }
    const names = (await fs.readdir(source, { withFileTypes: true }))
      .filter((e) => e.isFile() && (IMAGE_EXTENSIONS as readonly string[]).includes(path.extname(e.name).toLowerCase()))
      .map((e) => e.name)
      .sort();
    if (names.length === 0)
      throw new UserError(`'${source}' holds no images (${IMAGE_EXTENSIONS.join(', ')})`, { code: 'not-found', field });
    files.push(...names.map((n) => path.resolve(source, n)));
  }
  if (files.length === 0) throw new UserError('is required (a folder or image files)', { field });
  return files;
}
