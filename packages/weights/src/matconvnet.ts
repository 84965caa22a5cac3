/**
 * MatConvNet networks (imagenet-vgg-verydeep-19.mat, the notebook's file): a
 * MAT-file whose variable `layers` is a cell of structs (name, type, and
 * weights = {kernel, bias}; older files: filters, biases) and whose `meta`
 * (older files: top-level `normalization`) holds averageImage, the mean
 * pixel in RGB. Kernels are H x W x in x out (see MATCONVNET.md for why the
 * first axis is the height, as in Keras, so no spatial transpose is made).
 *
 * The real file is ~510 MB of which conv1_1..conv5_4 are the first ~80 MB of
 * the `layers` variable, one zlib stream: it is inflated as a stream and
 * parsed as it grows, and inflation stops as soon as conv5_4 is complete, so
 * the 400+ MB of fully connected layers are never decompressed or held.
 */
import { createInflate } from 'node:zlib';
import { Readable } from 'node:stream';
import { PREPROCESSING, type Preprocessing } from '@nst/core';
import { MAX_DEFLATE_RATIO, type MemoryBudget } from './budget.js';
import { ByteReader } from './bytes.js';
import { check, fail, FormatError } from './errors.js';
import { FileBytes, withFile } from './filebytes.js';
import { checkShape, gatherHWIO, layerShape, LAYER_BY_NAME, STRIDES, type RawConv } from './layers.js';
import {
  checkMatHeader,
  MatNodes,
  MI,
  MX,
  numericValues,
  parseMatrix,
  readMatrixHeader,
  readTag,
  type MatArray,
  type MatrixHeader,
} from './mat5.js';
import { checkPreprocessing } from './preprocessing.js';
import { hasMagic, registerFormat, type LoadedFile, type Probe } from './registry.js';
import { sha256File } from './cache.js';

const LAST_CONV = 'conv5_4';
const MAX_SMALL_VARIABLE = 256 << 20;
/** Where the mean pixel sits, for messages. */
const MEAN_FIELD = 'meta.normalization.averageImage';

interface VariableResult {
  name: string;
  convs?: Map<string, RawConv>;
  mean?: number[];
}

export async function loadMatConvNet(probe: Probe): Promise<LoadedFile> {
  checkMatHeader(probe.head);
  const found = await withFile(
    probe.path,
    async (file) => {
      let convs: Map<string, RawConv> | undefined;
      let mean: number[] | undefined;
      let offset = 128;
      while (offset + 8 <= file.size && !(convs && mean)) {
        const tag = readTag(new ByteReader(await file.read(offset, 8, 'a MAT element tag'), 'MAT-file'), 0);
        check(tag.type === MI.MATRIX || tag.type === MI.COMPRESSED, `MAT element at byte ${offset} has type ${tag.type}, not a variable`);
        check(offset + 8 + tag.size <= file.size, `the variable at byte ${offset} (${tag.size} bytes) runs past the end of the file`);
        const v = await readVariable(file, offset, tag.size, tag.type === MI.COMPRESSED);
        convs ??= v.convs;
        mean ??= v.mean;
        offset += tag.next;
      }
      check(convs, 'has no "layers" variable: not a MatConvNet network');
      return { convs, mean };
    },
    probe.budget,
  );
  const details: Record<string, string> = {};
  let preprocessing: Preprocessing = PREPROCESSING.caffeRgb;
  if (!found.mean) details['mean pixel'] = 'not in the file; using the standard [123.68, 116.779, 103.939]';
  else if (found.mean.some((m, c) => Math.abs(m - PREPROCESSING.caffeRgb.mean[c]) > 1e-3)) {
    const mean = found.mean as unknown as readonly [number, number, number];
    preprocessing = checkPreprocessing({ name: 'matconvnet-mean', channelOrder: 'rgb', scale: 255, mean, std: [1, 1, 1] }, MEAN_FIELD);
  }
  return { convs: found.convs, preprocessing, sha256: await sha256File(probe.path), details };
}

/**
 * Streams the variable whose tag is at `offset` until what is needed of it has
 * been parsed: a miMATRIX element (tag included), or the inflated content of
 * a miCOMPRESSED one (which is itself a miMATRIX element).
 */
async function readVariable(file: FileBytes, offset: number, size: number, compressed: boolean): Promise<VariableResult> {
  const source = compressed ? file.stream(offset + 8, size) : file.stream(offset, 8 + size);
  const inflater = compressed ? createInflate({ chunkSize: 1 << 20 }) : undefined;
  const stream: Readable = inflater ? source.pipe(inflater) : source;
  // Inflated, the variable is an miMATRIX element whose tag declares its size: the buffer never grows past that.
  const buffer = new GrowingBuffer(compressed ? MAX_DEFLATE_RATIO * size + (1 << 16) : 8 + size, file.budget);
  const parser = new VariableParser(file.budget);
  try {
    for await (const chunk of stream) {
      buffer.append(chunk as Buffer);
      if (compressed && buffer.length >= 8) buffer.capAt(8 + readTag(new ByteReader(buffer.bytes(), 'MAT variable'), 0).size);
      const result = parser.advance(buffer.bytes(), false);
      if (result) return result;
    }
    return parser.advance(buffer.bytes(), true)!;
  } catch (e) {
    if (e instanceof FormatError) throw e;
    return fail(`the variable at byte ${offset} does not inflate (${(e as Error).message})`);
  } finally {
    source.unpipe();
    source.destroy();
    inflater?.destroy();
    buffer.free();
  }
}

/**
 * Parses one variable as its bytes arrive. `advance` resumes where the last
 * call stopped (so each `layers` element is parsed once, however often it is
 * called) and returns the result once enough is there, undefined when more
 * bytes are needed (never when `complete`).
 */
class VariableParser {
  private header: MatrixHeader | undefined;
  private end = 0;
  /** `layers`: the next cell element and where it starts, and the convs found so far. */
  private item = 0;
  private p = 0;
  private readonly convs = new Map<string, RawConv>();
  private readonly nodes: MatNodes;
  constructor(private readonly budget: MemoryBudget) {
    this.nodes = new MatNodes(budget);
  }

  advance(bytes: Uint8Array, complete: boolean): VariableResult | undefined {
    const r = new ByteReader(bytes, 'MAT variable');
    if (!this.header) {
      try {
        const tag = readTag(r, 0);
        check(tag.type === MI.MATRIX, `a MAT variable holds element type ${tag.type}, not an array`);
        this.header = readMatrixHeader(r, 8);
        this.end = 8 + tag.size;
        this.p = this.header.body;
      } catch (e) {
        if (complete || !(e instanceof FormatError) || bytes.length > 1 << 20) throw e;
        return undefined;
      }
    }
    const name = this.header.name;
    if (name === 'layers') return this.layers(r, complete);
    if (name !== 'meta' && name !== 'normalization') return { name };
    if (bytes.length < this.end) {
      check(!complete, `variable ${name} is truncated`);
      check(this.end <= MAX_SMALL_VARIABLE, `variable ${name} is implausibly large`);
      return undefined;
    }
    const value = parseMatrix(r, 8, this.end, this.nodes);
    const norm = name === 'meta' ? field(value, 'normalization') : value;
    const avg = norm && field(norm, 'averageImage');
    return { name, mean: avg ? meanPixel(avg, this.budget) : undefined };
  }

  /** Walks the `layers` cell element by element, as far as the bytes go, collecting conv layers up to conv5_4. */
  private layers(r: ByteReader, complete: boolean): VariableResult | undefined {
    const header = this.header!;
    check(header.cls === MX.CELL, '"layers" is not a cell array');
    for (; this.item < header.count; this.item++) {
      if (this.p + 8 > r.length) return needMore(complete, this.item);
      const tag = readTag(r, this.p);
      check(tag.type === MI.MATRIX && tag.next <= this.end, `layer ${this.item + 1} is not a MAT array inside "layers"`);
      if (tag.dataOffset + tag.size > r.length) return needMore(complete, this.item);
      const conv = convOf(parseMatrix(r, tag.dataOffset, tag.dataOffset + tag.size, this.nodes), this.item, this.budget);
      this.p = tag.next;
      if (conv) {
        check(!this.convs.has(conv.name), `layer ${conv.name} appears twice`);
        this.convs.set(conv.name, conv.weights);
        if (conv.name === LAST_CONV) break;
      }
    }
    return { name: 'layers', convs: this.convs };
  }
}

function needMore(complete: boolean, i: number): undefined {
  check(!complete, `"layers" is truncated at layer ${i + 1}`);
  return undefined;
}

/** A conv layer's weights from its struct, in HWIO; undefined for other layers (relu, pool, fc ...). */
function convOf(layer: MatArray, i: number, budget: MemoryBudget): { name: string; weights: RawConv } | undefined {
  check(layer.kind === 'struct' && layer.elements.length === 1, `layer ${i + 1} is not a struct`);
  const name = field(layer, 'name');
  check(name?.kind === 'char', `layer ${i + 1} has no name`);
  if (!LAYER_BY_NAME.has(name.text)) return undefined;
  const type = field(layer, 'type');
  check(type?.kind !== 'char' || type.text === 'conv', `layer ${name.text} has type ${type?.kind === 'char' ? type.text : '?'}, not conv`);
  const weights = field(layer, 'weights');
  let kernel = field(layer, 'filters');
  let bias = field(layer, 'biases');
  if (weights) {
    check(weights.kind === 'cell' && weights.items.length === 2, `layer ${name.text}: weights is not a cell {kernel, bias}`);
    [kernel, bias] = weights.items;
  }
  check(kernel && bias, `layer ${name.text} has no weights`);
  const { inChannels: I, outChannels: O } = layerShape(name.text);
  checkShape(name.text, 'kernel', kernel.dims, [3, 3, I, O]);
  check(
    bias.dims.reduce((a, b) => a * b, 1) === O && bias.dims.filter((d) => d !== 1).length <= 1,
    () => `${name.text} bias has dims ${bias!.dims.join('x')}, VGG-19 needs ${O} values`,
  );
  // MATLAB stores F(h, w, i, o) column-major: element h + 3w + 9i + 9*in*o.
  const k = gatherHWIO(numericValues(kernel, `${name.text} kernel`, budget), 0, STRIDES.matlab(I, O), I, O);
  const b = Float32Array.from(numericValues(bias, `${name.text} bias`, budget));
  return { name: name.text, weights: { kernel: k, bias: b } };
}

function field(s: MatArray, name: string): MatArray | undefined {
  return s.kind === 'struct' && s.elements.length >= 1 ? s.elements[0].get(name) : undefined;
}

/**
 * averageImage: the RGB mean pixel (1x1x3), or a mean image (HxWx3) averaged
 * per channel. An empty one means "not recorded"; one that is not numeric, not
 * a multiple of 3 values or not finite is an error (silently using another
 * mean would shift every colour).
 */
function meanPixel(avg: MatArray, budget: MemoryBudget): number[] | undefined {
  if (avg.kind === 'numeric' && avg.data.length === 0) return undefined;
  check(avg.kind === 'numeric', `${MEAN_FIELD} is not a numeric array`, 'WEIGHTS_BAD_PREPROCESSING', MEAN_FIELD);
  const values = numericValues(avg, MEAN_FIELD, budget);
  check(
    values.length % 3 === 0,
    `${MEAN_FIELD} holds ${values.length} values, not 3 per channel (RGB)`,
    'WEIGHTS_BAD_PREPROCESSING',
    MEAN_FIELD,
  );
  const plane = values.length / 3; // column-major: the channel is the slowest axis
  const mean = [0, 1, 2].map((c) => values.subarray(c * plane, (c + 1) * plane).reduce((a, b) => a + b, 0) / plane);
  check(
    mean.every(Number.isFinite),
    `${MEAN_FIELD} averages to [${mean.join(', ')}], not finite values`,
    'WEIGHTS_BAD_PREPROCESSING',
    MEAN_FIELD,
  );
  return mean;
}

/**
 * A byte buffer that grows as data arrives (doubling, to copy little), never
 * beyond `limit`, which capAt lowers once the declared size is known; what
 * it holds is charged to the budget and given back by free().
 */
class GrowingBuffer {
  private buf = Buffer.alloc(0);
  length = 0;
  constructor(
    private limit: number,
    private readonly budget: MemoryBudget,
  ) {}

  /** The content's declared size is `limit`: it may not grow, nor be allocated, beyond. */
  capAt(limit: number): void {
    check(this.length <= limit, `a variable inflates to more than the ${limit} bytes it declares`);
    this.limit = Math.min(this.limit, limit);
  }

  append(chunk: Buffer): void {
    const need = this.length + chunk.length;
    check(need <= this.limit, `a variable inflates beyond ${this.limit} bytes`, 'WEIGHTS_TOO_LARGE');
    if (need > this.buf.length) {
      const size = Math.min(this.limit, Math.max(need, 2 * this.buf.length, 1 << 20));
      this.budget.take(size - this.buf.length, 'an inflated MAT variable');
      const grown = Buffer.allocUnsafe(size);
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    chunk.copy(this.buf, this.length);
    this.length = need;
  }

  free(): void {
    this.budget.release(this.buf.length);
    this.buf = Buffer.alloc(0);
  }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

registerFormat({
  name: 'matconvnet',
  description: 'MatConvNet MAT-file (.mat)',
  detect: (p) => !p.isDirectory && hasMagic(p.head, 'MATLAB'),
  load: (p) => loadMatConvNet(p),
});
