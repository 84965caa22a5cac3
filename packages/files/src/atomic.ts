import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Writes a file so that readers only ever see the old or the new content:
 * write a temporary file beside it (same folder, so rename is atomic on one
 * file system), flush, then rename over the target. `write` receives the
 * temporary path, which keeps the target's extension (encoders such as sharp
 * choose the format from it).
 */
export async function writeFileAtomic(target: string, write: (tmpPath: string) => Promise<void>): Promise<void> {
  const dir = path.dirname(target);
  const base = path.basename(target);
  const ext = path.extname(base);
  const tmp = path.join(dir, `.${base}.${process.pid}.${randomBytes(4).toString('hex')}.tmp${ext}`);
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
