import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/** The temporary file writeFileAtomic writes beside `target` before renaming it. */
function temporaryPath(target: string): string {
  const base = path.basename(target);
  return path.join(path.dirname(target), `.${base}.${process.pid}.${randomBytes(4).toString('hex')}.tmp${path.extname(base)}`);
}

/** Splits a name temporaryPath() makes into the target's name and the writer's pid. */
const TEMPORARY_NAME = /^\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp(\.[^./]*)?$/;

/**
 * Writes a file so that readers only ever see the old or the new content:
 * write a temporary file beside it (same folder, so rename is atomic on one
 * file system), flush, then rename over the target. `write` receives the
 * temporary path, which keeps the target's extension (encoders such as sharp
 * choose the format from it).
 */
export async function writeFileAtomic(target: string, write: (tmpPath: string) => Promise<void>): Promise<void> {
  const tmp = temporaryPath(target);
  try {
    await write(tmp);
    const fh = await fs.open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, target);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

export async function writeBytesAtomic(target: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(target, (tmp) => fs.writeFile(tmp, bytes));
}

/**
 * Removes the temporary files that killed writers left in `dir`: only names
 * writeFileAtomic makes, for targets `isTarget` accepts (the outputs of one
 * job), only regular files, and only when the process that wrote them is gone
 * (a live one, this process included, may still be writing). Returns the
 * paths removed.
 */
export async function removeStaleTemporaries(dir: string, isTarget: (name: string) => boolean): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMPORARY_NAME.exec(name);
    if (!m || (m[3] ?? '') !== path.extname(m[1]) || !isTarget(m[1]) || processAlive(Number(m[2]))) continue;
    const file = path.join(dir, name);
    try {
      if (!(await fs.lstat(file)).isFile()) continue;
      await fs.rm(file);
      removed.push(file);
    } catch {
      // Gone already, or not ours to remove: leave it.
    }
  }
  return removed;
}

function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
