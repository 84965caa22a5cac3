/**
 * A small tar reader (POSIX ustar, with pax extended headers and GNU base-256
 * sizes): the member names and where each member's bytes lie, nothing
 * extracted. PyTorch before 0.1.10 saved into a tar of four members. Every
 * header's checksum is verified, every declared size must fit in the file
 * before it is used, and the number of headers walked is capped, so a corrupt
 * or hostile archive fails with a one-line error instead of a long walk.
 */
import { ByteReader } from './bytes.js';
import { check } from './errors.js';
import type { FileBytes } from './filebytes.js';

export interface TarMember {
  readonly name: string;
  /** Byte offset of the member's data in the file. */
  readonly offset: number;
  readonly size: number;
}

const BLOCK = 512;
/** A torch archive has 4 members (and a pax header before any that needs one); far more is not a weight file. */
export const MAX_TAR_HEADERS = 64;
/** A pax extended header holds a few "length key=value" records. */
const MAX_PAX_HEADER = 64 << 10;

/** True when `head` (the file's first bytes) is a ustar or GNU tar header. */
export function isTar(head: Uint8Array): boolean {
  return head.length >= 263 && String.fromCharCode(...head.subarray(257, 262)) === 'ustar';
}

/** The regular-file members of the archive, by name (a name that appears twice is refused). */
export async function readTarDirectory(file: FileBytes): Promise<Map<string, TarMember>> {
  const members = new Map<string, TarMember>();
  let pax: Map<string, string> | undefined;
  let pos = 0;
  for (let headers = 0; ; headers++) {
    // The archive ends with zero blocks, or (for a truncated one) with the file.
    if (pos + BLOCK > file.size) break;
    const block = await file.read(pos, BLOCK, `the tar header at byte ${pos}`);
    if (block.every((b) => b === 0)) break;
    check(headers < MAX_TAR_HEADERS, `more than ${MAX_TAR_HEADERS} tar headers: not a PyTorch file`, 'WEIGHTS_TOO_LARGE');
    const header = parseHeader(block, pos);
    const size = pax?.has('size') ? paxSize(pax.get('size')!, pos) : header.size;
    const dataStart = pos + BLOCK;
    check(
      size <= file.size - dataStart,
      () => `the tar member "${header.name}" at byte ${pos} declares ${size} bytes, past the end of the file (${file.size} bytes)`,
      'WEIGHTS_TOO_LARGE',
      header.name,
    );
    if (header.type === 'x') {
      check(size <= MAX_PAX_HEADER, `the pax header at byte ${pos} declares ${size} bytes`, 'WEIGHTS_TOO_LARGE');
      pax = parsePax(await file.read(dataStart, size, `the pax header at byte ${pos}`), pos);
    } else {
      if (header.type === '0' || header.type === '\0') {
        const name = pax?.get('path') ?? header.name;
        check(!members.has(name), `the tar member "${name}" appears twice`, 'WEIGHTS_CORRUPT', name);
        members.set(name, { name, offset: dataStart, size });
      }
      pax = undefined; // a pax header applies to the one member after it
    }
    pos = dataStart + Math.ceil(size / BLOCK) * BLOCK;
  }
  return members;
}

interface Header {
  readonly name: string;
  readonly size: number;
  readonly type: string;
}

function parseHeader(block: Buffer, at: number): Header {
  const field = (start: number, length: number) => {
    const bytes = block.subarray(start, start + length);
    const end = bytes.indexOf(0);
    return bytes.subarray(0, end < 0 ? length : end).toString('utf8');
  };
  // The checksum: the sum of the header's bytes with its own field counted as spaces.
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  const stored = parseOctal(field(148, 8), 'checksum', at);
  check(stored === sum, `the tar header at byte ${at} has a bad checksum (${stored}, computed ${sum}): the archive is corrupt`);
  const prefix = field(345, 155);
  const name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
  return { name, size: parseSize(block.subarray(124, 136), at), type: String.fromCharCode(block[156]) };
}

/** An octal field (digits, padded with spaces or NULs). */
function parseOctal(text: string, what: string, at: number): number {
  const digits = text.trim();
  check(/^[0-7]{1,12}$/.test(digits), `the tar header at byte ${at} has a malformed ${what} field`);
  return Number.parseInt(digits, 8);
}

/** The size field: octal, or GNU base-256 (first byte 0x80) for sizes past 8 GiB; a safe integer either way. */
function parseSize(field: Buffer, at: number): number {
  if (!(field[0] & 0x80)) return parseOctal(field.toString('latin1').replace(/\0/g, ' '), 'size', at);
  check(field[0] === 0x80, `the tar header at byte ${at} has a negative size`);
  let v = 0n;
  for (const b of field.subarray(1)) v = (v << 8n) | BigInt(b);
  check(v <= BigInt(Number.MAX_SAFE_INTEGER), `the tar header at byte ${at} declares ${v} bytes`, 'WEIGHTS_TOO_LARGE');
  return Number(v);
}

function paxSize(text: string, at: number): number {
  check(/^\d{1,16}$/.test(text), `the pax header before byte ${at} has a malformed size`);
  const v = Number(text);
  check(Number.isSafeInteger(v), `the pax header before byte ${at} declares ${text} bytes`, 'WEIGHTS_TOO_LARGE');
  return v;
}

/** Pax records: "<length> <key>=<value>\n", the length counting the whole record. */
function parsePax(bytes: Buffer, at: number): Map<string, string> {
  const r = new ByteReader(bytes, `the pax header at byte ${at}`);
  const records = new Map<string, string>();
  let p = 0;
  while (p < bytes.length) {
    const space = bytes.indexOf(0x20, p);
    check(space > p && space - p <= 8, `the pax header at byte ${at} has a malformed record`);
    const length = Number(r.ascii(p, space - p));
    check(Number.isSafeInteger(length) && length > space - p + 2, `the pax header at byte ${at} has a malformed record length`);
    r.need(p, length, 'a pax record');
    const record = bytes.subarray(space + 1, p + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    check(eq > 0, `the pax header at byte ${at} has a record without "="`);
    records.set(record.slice(0, eq), record.slice(eq + 1));
    p += length;
  }
  return records;
}
