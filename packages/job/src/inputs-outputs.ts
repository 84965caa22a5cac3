import { promises as fs } from 'node:fs';
import path from 'node:path';
import { UserError } from '@nst/core';

/** A file a job reads, with the job field that names it. */
export interface JobInput {
  readonly file: string;
  readonly field: string;
  /** For messages: 'content image', 'weights'. */
  readonly what: string;
}

/** Every file a job may write. */
export interface JobOutputs {
  /** Final images (one per batch item). */
  readonly finals: readonly string[];
  /** Intermediate images of output o at iteration n (saves, and the last finite image of a run that diverged): intermediatePath(o, n) for n a multiple of `every` up to `iterations`. */
  readonly intermediate?: { readonly every: number; readonly iterations: number };
  readonly checkpoint: string;
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

const same = (a: Identity, b: Identity) => a.real === b.real || (a.inode !== undefined && a.inode === b.inode);

/**
 * Refuses, before any work, a job that would write over one of its own
 * inputs: the final images, the intermediate saves (<stem>_<n><ext> for every
 * n the schedule writes), and the checkpoint, against the content, style, init
 * and weight files. Paths are compared after resolving links, and existing
 * files by device and inode too, so a symbolic or hard link to an input is
 * caught as well as the input's own path.
 */
export async function refuseOverwritingInputs(inputs: readonly JobInput[], outputs: JobOutputs): Promise<void> {
  const inputIds = await Promise.all(inputs.map(async (i) => ({ ...i, id: await identify(i.file) })));
  const check = async (file: string) => {
    const id = await identify(file);
    const hit = inputIds.find((i) => same(i.id, id));
    if (!hit) return;
    const how =
      id.real !== hit.id.real
        ? ' (a hard link to it)'
        : id.real !== path.resolve(file) || hit.id.real !== path.resolve(hit.file)
          ? ` (both lead to '${hit.id.real}')`
          : '';
    throw new UserError(`'${file}' would overwrite the ${hit.what} '${hit.file}'${how}: choose another output`, {
      code: 'conflict',
      field: 'out',
    });
  };
  for (const f of outputs.finals) await check(f);
  await check(outputs.checkpoint);
  const every = outputs.intermediate?.every ?? 0;
  const iterations = outputs.intermediate?.iterations ?? 0;
  if (every <= 0) return;
  // The schedule can name millions of files: rather than list them, ask of each
  // input (by its real path) and of each file already in the output folder (by
  // inode: a hard link) whether it has an intermediate save's name.
  for (const out of outputs.finals) {
    const outId = await identify(out);
    const dir = path.dirname(outId.real);
    const ext = path.extname(outId.real);
    const stem = path.basename(outId.real, ext);
    const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const pattern = new RegExp(`^${escapeRegExp(stem)}_(\\d+)${escapeRegExp(ext)}$`);
    const scheduled = (name: string) => {
      const m = pattern.exec(name);
      if (!m || !/^(0|[1-9]\d*)$/.test(m[1])) return false;
      const n = Number(m[1]);
      return n % every === 0 && n <= iterations;
    };
    for (const i of inputIds)
      if (path.dirname(i.id.real) === dir && scheduled(path.basename(i.id.real)))
        throw new UserError(`an intermediate save would overwrite the ${i.what} '${i.file}': choose another output or save interval`, {
          code: 'conflict',
          field: 'out',
        });
    let names: string[] = [];
    try {
      names = await fs.readdir(dir);
    } catch {
      continue;
    }
    for (const name of names.filter(scheduled)) await check(path.join(dir, name));
  }
}
