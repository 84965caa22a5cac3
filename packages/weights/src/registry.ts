import { stat } from 'node:fs/promises';
import type { DefaultLayers, Preprocessing } from '@nst/core';
import { MemoryBudget } from './budget.js';
import { openRegular } from './filebytes.js';
import type { RawConv } from './layers.js';

/** What format detection sees of a path: its first bytes, or that it is a folder. */
export interface Probe {
  readonly path: string;
  readonly isDirectory: boolean;
  /** File size in bytes (0 for a folder). */
  readonly size: number;
  /** The first bytes of the file (up to 4 KiB; empty for a folder). */
  readonly head: Uint8Array;
  /** What loading this file may allocate on the word of its content (one budget for the whole file, shards included). */
  readonly budget: MemoryBudget;
}

export interface LoadOptions {
  readonly verbose?: boolean;
  /** Overrides the preprocessing the loader detects (for .pth files of unknown origin). */
  readonly preprocessing?: Preprocessing;
  /** Where notes go under `verbose` (default: stderr). */
  readonly log?: (line: string) => void;
}

/** What a format's loader returns; loadWeights orders, validates and labels it. */
export interface LoadedFile {
  readonly convs: Map<string, RawConv>;
  readonly preprocessing: Preprocessing;
  /** SHA-256 (hex) identifying the weights: of the file, or recorded in the cache. */
  readonly sha256?: string;
  /** Extra facts for `nst weights info` (source of a cache, detection notes). */
  readonly details?: Record<string, string>;
  /** The loss layers the file says it is meant for (WeightSet.defaultLayers). */
  readonly defaultLayers?: DefaultLayers;
}

/** One supported file format. New formats register here and nothing else changes. */
export interface WeightFormat {
  /** Short id recorded as WeightSet.format: tfjs-layers, safetensors, keras-h5, matconvnet, pth. */
  readonly name: string;
  /** What a user would call it, for "expected one of" messages. */
  readonly description: string;
  /** True when the probe looks like this format (by content, never by extension alone). */
  detect(probe: Probe): boolean;
  load(probe: Probe, options: LoadOptions): Promise<LoadedFile>;
}

const formats: WeightFormat[] = [];

export function registerFormat(format: WeightFormat): void {
  if (!formats.some((f) => f.name === format.name)) formats.push(format);
}

export function registeredFormats(): readonly WeightFormat[] {
  return formats;
}

/** A folder, or a regular file and its first bytes; a FIFO, device or socket is refused before anything is read. */
export async function probePath(path: string): Promise<Probe> {
  const budget = new MemoryBudget();
  if ((await stat(path)).isDirectory()) return { path, isDirectory: true, size: 0, head: new Uint8Array(0), budget };
  const { fh, size } = await openRegular(path);
  try {
    const head = new Uint8Array(Math.min(4096, size));
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return { path, isDirectory: false, size, head: head.subarray(0, bytesRead), budget };
  } finally {
    await fh.close();
  }
}

export function detectFormat(probe: Probe): WeightFormat | undefined {
  return formats.find((f) => f.detect(probe));
}

/** True when `head` starts with `magic` at `offset`. */
export function hasMagic(head: Uint8Array, magic: string | readonly number[], offset = 0): boolean {
  const bytes = typeof magic === 'string' ? [...magic].map((c) => c.charCodeAt(0)) : magic;
  if (head.length < offset + bytes.length) return false;
  return bytes.every((b, i) => head[offset + i] === b);
}
