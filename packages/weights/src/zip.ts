/**
 * A small ZIP reader (PKWARE APPNOTE 6.3): the end-of-central-directory
 * record (and its ZIP64 form), the central directory, local headers, and
 * entries stored (method 0, as torch.save writes them) or deflated (8). Every
 * offset and size is checked against the file's size before it is used, and
 * each entry read is checked against its CRC-32. Against zip bombs: entries
 * may not share bytes (nor overlap the central directory), each may expand
 * at most as far as deflate can, all of them together at most
 * MAX_ARCHIVE_EXPANSION times the file, and every inflated entry is charged
 * to the file's memory budget before it is inflated.
 */
import { crc32, inflateRawSync } from 'node:zlib';
import { MAX_DEFLATE_RATIO } from './budget.js';
import { ByteReader } from './bytes.js';
import { check, fail } from './errors.js';
import type { FileBytes } from './filebytes.js';

export interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CD_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const MAX_CENTRAL_DIRECTORY = 64 << 20;
/** A state dict's zip holds a few entries per tensor; far more is not a weight file. */
const MAX_ENTRIES = 100_000;
/**
 * The sum of all entries' sizes over the file's size. torch.save stores its
 * entries (ratio 1); deflated float weights barely shrink. A larger total is
 * a bomb even when each entry alone is plausible.
 */
export const MAX_ARCHIVE_EXPANSION = 64;
/** Local header (30 bytes) plus the shortest name: what an entry occupies before its data, at least. */
const LOCAL_HEADER = 30;

export async function readZipDirectory(file: FileBytes): Promise<Map<string, ZipEntry>> {
  const tailSize = Math.min(file.size, 22 + 65535 + 20);
  const tail = new ByteReader(await file.read(file.size - tailSize, tailSize, 'zip end of central directory'), 'zip end record');
  let eocd = -1;
  for (let i = tailSize - 22; i >= 0; i--)
    if (tail.u32(i) === EOCD_SIG) {
      eocd = i;
      break;
    }
  check(eocd >= 0, 'no zip end-of-central-directory record: the file is truncated or not a zip');
  let entries = tail.u16(eocd + 10);
  let cdSize = tail.u32(eocd + 12);
  let cdOffset = tail.u32(eocd + 16);
  if (entries === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    check(eocd >= 20 && tail.u32(eocd - 20) === ZIP64_LOCATOR_SIG, 'zip64 end record locator is missing');
    const z64 = new ByteReader(await file.read(tail.u64(eocd - 12), 56, 'zip64 end record'), 'zip64 end record');
    check(z64.u32(0) === ZIP64_EOCD_SIG, 'zip64 end record has a bad signature');
    entries = z64.u64(32);
    cdSize = z64.u64(40);
    cdOffset = z64.u64(48);
  }
  check(cdSize <= MAX_CENTRAL_DIRECTORY, `zip central directory of ${cdSize} bytes is implausibly large`, 'WEIGHTS_TOO_LARGE');
  check(entries <= cdSize / 46, `zip claims ${entries} entries in a ${cdSize}-byte central directory`, 'WEIGHTS_TOO_LARGE');
  check(entries <= MAX_ENTRIES, `zip claims ${entries} entries, more than ${MAX_ENTRIES}`, 'WEIGHTS_TOO_LARGE');
  const cd = new ByteReader(await file.read(cdOffset, cdSize, 'zip central directory'), 'zip central directory');
  const out = new Map<string, ZipEntry>();
  let p = 0;
  for (let e = 0; e < entries; e++) {
    check(cd.u32(p) === CD_SIG, `zip central directory entry ${e} has a bad signature`);
    const nameLen = cd.u16(p + 28);
    const extraLen = cd.u16(p + 30);
    const commentLen = cd.u16(p + 32);
    const name = cd.utf8(p + 46, nameLen);
    let compressedSize = cd.u32(p + 20);
    let size = cd.u32(p + 24);
    let localHeaderOffset = cd.u32(p + 42);
    // ZIP64 extended information (extra field 0x0001) replaces the 0xffffffff fields, in this order.
    const extra = new ByteReader(cd.slice(p + 46 + nameLen, extraLen), 'zip extra field');
    for (let q = 0; q + 4 <= extra.length; ) {
      const id = extra.u16(q);
      const len = extra.u16(q + 2);
      if (id === 0x0001) {
        let r = q + 4;
        if (size === 0xffffffff) (size = extra.u64(r)), (r += 8);
        if (compressedSize === 0xffffffff) (compressedSize = extra.u64(r)), (r += 8);
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = extra.u64(r);
      }
      q += 4 + len;
    }
    check(!out.has(name), `zip entry ${name} appears twice`, 'WEIGHTS_CORRUPT', name);
    out.set(name, { name, method: cd.u16(p + 10), crc: cd.u32(p + 16), compressedSize, size, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  checkLayout([...out.values()], cdOffset, cdSize, file.size);
  return out;
}

/**
 * Each entry's bytes (local header, name, data) lie before the central
 * directory and apart from every other entry's, and all entries together
 * expand at most MAX_ARCHIVE_EXPANSION times the file. Without this, many
 * directory entries naming one highly compressed stream make a small file
 * inflate to gigabytes.
 */
function checkLayout(entries: ZipEntry[], cdOffset: number, cdSize: number, fileSize: number): void {
  check(cdOffset + cdSize <= fileSize, `zip central directory (bytes ${cdOffset}..${cdOffset + cdSize}) runs past the end of the file`);
  const sorted = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  let end = 0;
  let previous = '';
  let total = 0;
  for (const e of sorted) {
    check(e.localHeaderOffset >= end, () => `zip entries ${previous} and ${e.name} share bytes`, 'WEIGHTS_CORRUPT', e.name);
    end = e.localHeaderOffset + LOCAL_HEADER + Buffer.byteLength(e.name) + e.compressedSize;
    check(end <= cdOffset, `zip entry ${e.name} runs into the central directory`, 'WEIGHTS_CORRUPT', e.name);
    previous = e.name;
    total += e.size;
  }
  check(
    total <= MAX_ARCHIVE_EXPANSION * fileSize,
    `zip entries expand to ${total} bytes, more than ${MAX_ARCHIVE_EXPANSION} times the ${fileSize}-byte file: refusing a zip bomb`,
    'WEIGHTS_TOO_LARGE',
  );
}

/** The uncompressed bytes of `entry`, CRC-checked. */
export async function readZipEntry(file: FileBytes, entry: ZipEntry): Promise<Buffer> {
  const local = new ByteReader(await file.read(entry.localHeaderOffset, 30, `zip local header of ${entry.name}`), 'zip local header');
  check(local.u32(0) === LOCAL_SIG, `zip local header of ${entry.name} has a bad signature`);
  const dataOffset = entry.localHeaderOffset + 30 + local.u16(26) + local.u16(28);
  if (entry.method === 0) check(entry.compressedSize === entry.size, `zip entry ${entry.name} is stored with two different sizes`);
  else if (entry.method === 8)
    check(
      entry.size <= MAX_DEFLATE_RATIO * entry.compressedSize + 1024,
      `zip entry ${entry.name} claims an impossible compression ratio`,
      'WEIGHTS_TOO_LARGE',
      entry.name,
    );
  else fail(`zip entry ${entry.name} uses compression method ${entry.method}; only stored and deflated are supported`);
  const raw = await file.read(dataOffset, entry.compressedSize, `zip entry ${entry.name}`);
  let data: Buffer;
  if (entry.method === 0) data = raw;
  else {
    // Charged at the declared size, and inflation stops there (maxOutputLength), whatever the stream holds.
    file.budget.take(entry.size, `zip entry ${entry.name} inflated`);
    try {
      data = inflateRawSync(raw, { maxOutputLength: Math.max(entry.size, 1) });
    } catch (e) {
      fail(`zip entry ${entry.name} does not inflate (${(e as Error).message})`);
    }
    check(data.length === entry.size, `zip entry ${entry.name} inflates to ${data.length} bytes, not ${entry.size}`);
  }
  check(crc32(data) >>> 0 === entry.crc, `zip entry ${entry.name} fails its CRC-32 check (corrupt file)`);
  return data;
}
