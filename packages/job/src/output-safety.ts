import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { UserError, type WeightSet } from '@nst/core';
import { removeStaleTemporaries } from '@nst/files';
import { inspectCheckpoint } from './checkpoint.js';
import { assertFileWritable, assertWritable } from './image-file.js';
import { partialPath } from './loop.js';
import { isInitKind, namesFile, type JobConfig } from './options.js';

/*
 * The user's files are never overwritten or lost: before any work, a job's
 * outputs are checked against its inputs and for being writable, and what a
 * killed run of the same outputs left behind is cleaned up.
 */

/** A file a job reads, with the job field that names it. */
export interface JobInput {
  readonly file: string;
  readonly field: string;
  /** For messages: 'content image', 'weights'. */
  readonly what: string;
}

/** Every file a job may write. */
export interface JobOutputs {
  readonly final: string;
  /** An interrupted run's image (partialPath). */
  readonly partial: string;
  /** Intermediate images at iteration n (saves, and the last finite image of a run that diverged): intermediatePath(final, n) for n a multiple of `every` up to `iterations`. */
  readonly intermediate: { readonly every: number; readonly iterations: number };
  readonly checkpoint: string;
}

/** The files one job writes. */
export function jobOutputs(job: JobConfig): JobOutputs {
  return {
    final: job.out,
    partial: partialPath(job.out),
    checkpoint: checkpointPathFor(job),
    // Saves every saveEvery; a run that diverges keeps its last report's image (every printEvery).
    intermediate: { every: gcd(job.saveEvery, job.printEvery), iterations: job.iterations },
  };
}

/** Where a path leads: its real path (the parent's, for a file not yet there) and, when it exists, its inode. */
interface Identity {
  readonly real: string;
  readonly inode?: string;
}

async function identify(file: string): Promise<Identity> {
  const abs = path.resolve(file);
  try {
    const st = await fs.stat(abs);
    return { real: await fs.realpath(abs), inode: `${st.dev}:${st.ino}` };
  } catch {
    // Not there (yet): the real folder it would land in, plus its name.
    try {
      return { real: path.join(await fs.realpath(path.dirname(abs)), path.basename(abs)) };
    } catch {
      return { real: abs };
    }
  }
}

/** A file that must not be written over, and whose it is (for messages). */
export interface ClaimedFile {
  readonly file: string;
  /** 'content image', 'output of line 3'. */
  readonly what: string;
  /** For outputs: the job that writes it, so that a job's own outputs are not held against it. */
  readonly owner?: string;
}

/**
 * Files that must not be written over, looked up by where they lead: by real
 * path, by inode (hard links), and by folder (to match the names of
 * intermediate saves without listing them).
 */
class ClaimIndex {
  private readonly byReal = new Map<string, (ClaimedFile & { id: Identity })[]>();
  private readonly byInode = new Map<string, (ClaimedFile & { id: Identity })[]>();
  private readonly byFolder = new Map<string, (ClaimedFile & { id: Identity })[]>();

  static async of(claims: readonly ClaimedFile[]): Promise<ClaimIndex> {
    const index = new ClaimIndex();
    for (const c of claims) {
      const entry = { ...c, id: await identify(c.file) };
      const add = (map: Map<string, (ClaimedFile & { id: Identity })[]>, key: string) => map.set(key, [...(map.get(key) ?? []), entry]);
      add(index.byReal, entry.id.real);
      if (entry.id.inode) add(index.byInode, entry.id.inode);
      add(index.byFolder, path.dirname(entry.id.real));
    }
    return index;
  }

  /** The first claim on `id` that is not `owner`'s. */
  find(id: Identity, owner?: string): (ClaimedFile & { id: Identity }) | undefined {
    const mine = (c: ClaimedFile) => owner !== undefined && c.owner === owner;
    return this.byReal.get(id.real)?.find((c) => !mine(c)) ?? (id.inode ? this.byInode.get(id.inode)?.find((c) => !mine(c)) : undefined);
  }

  /** Claims in `folder` whose file name passes `test`. */
  inFolder(folder: string, test: (name: string) => boolean, owner?: string): (ClaimedFile & { id: Identity })[] {
    return (this.byFolder.get(folder) ?? []).filter((c) => (owner === undefined || c.owner !== owner) && test(path.basename(c.id.real)));
  }
}

/** Whether `name` is an intermediate save of `final` that the schedule writes. */
function intermediateMatcher(finalReal: string, every: number, iterations: number): (name: string) => boolean {
  const ext = path.extname(finalReal);
  const stem = path.basename(finalReal, ext);
  const escapeRegExp = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${escapeRegExp(stem)}_(\\d+)${escapeRegExp(ext)}$`);
  return (name) => {
    const m = pattern.exec(name);
    if (!m || !/^(0|[1-9]\d*)$/.test(m[1]) || every <= 0) return false;
    const n = Number(m[1]);
    return n % every === 0 && n <= iterations;
  };
}

/**
 * The first of `outputs` (final image, checkpoint, intermediate saves) that
 * leads to a claimed file not owned by `owner`: by path after resolving
 * links, by inode for existing files, and by name for the intermediate saves
 * (the schedule can name millions: each claim in the output's folder is asked
 * whether it has such a name).
 */
async function firstOverwrite(
  outputs: JobOutputs,
  index: ClaimIndex,
  owner?: string,
): Promise<{ file: string; id: Identity; claim: ClaimedFile & { id: Identity }; intermediate: boolean } | undefined> {
  for (const file of [outputs.final, outputs.partial, outputs.checkpoint]) {
    const id = await identify(file);
    const claim = index.find(id, owner);
    if (claim) return { file, id, claim, intermediate: false };
  }
  const finalId = await identify(outputs.final);
  const scheduled = intermediateMatcher(finalId.real, outputs.intermediate.every, outputs.intermediate.iterations);
  const [claim] = index.inFolder(path.dirname(finalId.real), scheduled, owner);
  return claim ? { file: claim.file, id: claim.id, claim, intermediate: true } : undefined;
}

/**
 * Refuses, before any work, a job that would write over one of its own
 * inputs: the final image, the intermediate saves (<stem>_<n><ext> for every
 * n the schedule writes), and the checkpoint, against the content, style, init,
 * mask and weight files. Paths are compared after resolving links, and existing
 * files by device and inode too, so a symbolic or hard link to an input is
 * caught as well as the input's own path.
 */
export async function refuseOverwritingInputs(inputs: readonly JobInput[], outputs: JobOutputs): Promise<void> {
  const index = await ClaimIndex.of(inputs.map((i) => ({ file: i.file, what: i.what })));
  const hit = await firstOverwrite(outputs, index);
  if (hit) throw overwriteError(hit.file, hit.id, hit.claim, hit.intermediate);
  // Files already in the output folder with an intermediate save's name may be hard links to an input.
  const finalId = await identify(outputs.final);
  const scheduled = intermediateMatcher(finalId.real, outputs.intermediate.every, outputs.intermediate.iterations);
  let names: string[] = [];
  try {
    names = await fs.readdir(path.dirname(finalId.real));
  } catch {
    return;
  }
  for (const name of names.filter(scheduled)) {
    const file = path.join(path.dirname(finalId.real), name);
    const id = await identify(file);
    const claim = index.find(id);
    if (claim) throw overwriteError(file, id, claim, false);
  }
}

/**
 * Refuses a set of jobs (a batch manifest) in which one job's output,
 * checkpoint or intermediate saves would land on any job's input or on
 * another job's output. `jobs` are named by `name` (for the message: 'line 3').
 */
export async function refuseOverwritesAcrossJobs(
  jobs: readonly { readonly name: string; readonly inputs: readonly JobInput[]; readonly outputs: JobOutputs }[],
): Promise<void> {
  const claims: ClaimedFile[] = [];
  for (const j of jobs) {
    for (const i of j.inputs) claims.push({ file: i.file, what: `${i.what} of ${j.name}` });
    claims.push({ file: j.outputs.final, what: `output of ${j.name}`, owner: j.name });
    claims.push({ file: j.outputs.partial, what: `partial image of ${j.name}`, owner: j.name });
    claims.push({ file: j.outputs.checkpoint, what: `checkpoint of ${j.name}`, owner: j.name });
  }
  const index = await ClaimIndex.of(claims);
  for (const j of jobs) {
    const hit = await firstOverwrite(j.outputs, index, j.name);
    if (hit)
      throw new UserError(
        `${j.name} ${hit.intermediate ? 'would save an intermediate image over' : `would write '${hit.file}' over`} the ${hit.claim.what} ('${hit.claim.file}'): change one of them`,
        { code: 'conflict', field: 'out' },
      );
  }
}

function overwriteError(file: string, id: Identity, claim: ClaimedFile & { id: Identity }, intermediate: boolean): UserError {
  if (intermediate)
    return new UserError(`an intermediate save would overwrite the ${claim.what} '${claim.file}': choose another output or save interval`, {
      code: 'conflict',
      field: 'out',
    });
  const how =
    id.real !== claim.id.real
      ? ' (a hard link to it)'
      : id.real !== path.resolve(file) || claim.id.real !== path.resolve(claim.file)
        ? ` (both lead to '${claim.id.real}')`
        : '';
  return new UserError(`'${file}' would overwrite the ${claim.what} '${claim.file}'${how}: choose another output`, {
    code: 'conflict',
    field: 'out',
  });
}

/** Where a job writes its checkpoint. */
export function checkpointPathFor(job: Pick<JobConfig, 'out'>): string {
  return `${job.out}.ckpt`;
}

/**
 * Every check of a job's files that needs no decoding: the outputs (final
 * image, partial image, intermediate saves, checkpoint) lead to none of its
 * inputs, can be written, and the checkpoint path holds nothing but an nst
 * checkpoint; then removes what a killed run of the same outputs left.
 * Returns one line per file removed. `dryRun`: changes nothing (removes
 * nothing, and an output folder that does not exist yet passes when it can
 * be created).
 */
export async function checkJobFiles(job: JobConfig, weights: Pick<WeightSet, 'source'>, dryRun = false): Promise<string[]> {
  const outputs = jobOutputs(job);
  await refuseOverwritingInputs(await jobInputs(job, weights), outputs);
  const folder = path.dirname(path.resolve(job.out));
  if (dryRun && !existsSync(folder)) {
    await assertCreatable(folder);
    return [];
  }
  await assertWritable(job.out, 'out');
  await assertCheckpointUsable(outputs.checkpoint);
  return dryRun ? [] : removeLeftovers(job.out, outputs.checkpoint);
}

/** A folder that does not exist yet can be made: its nearest existing parent is a folder that takes new files. */
async function assertCreatable(folder: string): Promise<void> {
  let parent = path.dirname(folder);
  while (!existsSync(parent) && path.dirname(parent) !== parent) parent = path.dirname(parent);
  await assertFileWritable(path.join(parent, '.nst-folder-probe'), (detail) => new UserError(detail, { code: 'unwritable', field: 'out' }));
}

/** The files a job reads: its images and, when they are files on disk, its weights (each file of a weight folder). */
export async function jobInputs(job: JobConfig, weights: Pick<WeightSet, 'source'>): Promise<JobInput[]> {
  const inputs: JobInput[] = [
    { file: job.content, field: 'content', what: 'content image' },
    ...job.style.map((file) => ({ file, field: 'style', what: 'style image' })),
  ];
  if (!isInitKind(job.init)) inputs.push({ file: job.init, field: 'init', what: 'init image' });
  for (const [field, what] of [
    ['styleMask', 'style mask'],
    ['styleRegion', 'style region mask'],
    ['contentMask', 'content mask'],
  ] as const)
    for (const file of [job[field] ?? []].flat()) if (namesFile(field, file)) inputs.push({ file, field, what });
  for (const source of new Set([job.weights, weights.source])) {
    if (!source || /^[a-z]+:/.test(source)) continue;
    const st = await fs.stat(source).catch(() => undefined);
    if (st?.isFile()) inputs.push({ file: source, field: 'weights', what: 'weights' });
    else if (st?.isDirectory())
      for (const name of (await fs.readdir(source).catch(() => [] as string[])).slice(0, 10_000))
        inputs.push({ file: path.join(source, name), field: 'weights', what: 'weights' });
  }
  return inputs;
}

/**
 * The checkpoint path must be free for nst to write: absent, or an nst
 * checkpoint (of this job or an earlier one of the same output). Anything
 * else there (a folder, the user's own file) is refused now rather than
 * overwritten on Ctrl-C.
 */
async function assertCheckpointUsable(file: string): Promise<void> {
  const what = await inspectCheckpoint(file);
  if (what.kind === 'other')
    throw new UserError(`cannot use '${file}' as this output's checkpoint: ${what.why}; move it away or choose another output`, {
      code: 'unwritable',
      field: 'out',
    });
  await assertFileWritable(file, (detail) => new UserError(detail, { code: 'unwritable', field: 'out' }));
}

/** Removes the temporary files a killed run of the same output left behind; one line per file removed. */
async function removeLeftovers(out: string, checkpointPath: string): Promise<string[]> {
  const byFolder = new Map<string, ((name: string) => boolean)[]>();
  const add = (dir: string, accepts: (name: string) => boolean) => byFolder.set(dir, [...(byFolder.get(dir) ?? []), accepts]);
  const ext = path.extname(out);
  const stem = path.basename(out, ext);
  add(
    path.dirname(path.resolve(out)),
    (name) =>
      name === path.basename(out) ||
      name === path.basename(partialPath(out)) ||
      (name.startsWith(`${stem}_`) && name.endsWith(ext) && /^\d+$/.test(name.slice(stem.length + 1, name.length - ext.length))),
  );
  add(path.dirname(path.resolve(checkpointPath)), (name) => name === path.basename(checkpointPath));
  const lines: string[] = [];
  for (const [dir, accepts] of byFolder)
    for (const file of await removeStaleTemporaries(dir, (name) => accepts.some((a) => a(name))))
      lines.push(`removed '${file}', left behind by an earlier run that was killed`);
  return lines;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
