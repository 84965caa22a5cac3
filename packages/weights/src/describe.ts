import type { DefaultLayers, Preprocessing } from '@nst/core';
import type { LoadedWeights } from './load.js';

/** One line describing a preprocessing: "caffe-bgr: BGR, 0..255, minus mean [103.939, 116.779, 123.68]". */
export function describePreprocessing(p: Preprocessing): string {
  const std = p.std.every((s) => s === 1) ? '' : `, divided by std [${p.std.join(', ')}]`;
  return `${p.name}: ${p.channelOrder.toUpperCase()}, 0..${p.scale}, minus mean [${p.mean.join(', ')}]${std}`;
}

/** What `nst weights info` prints: format, preprocessing, checksum, and each layer's shapes. */
export function describeWeights({ set, details, loadMs }: LoadedWeights): string[] {
  const params = set.layers.reduce((n, l) => n + l.kernel.length + l.bias.length, 0);
  const fields: Array<[string, string]> = [
    ['source', set.source],
    ['format', set.format],
    ['preprocessing', describePreprocessing(set.preprocessing)],
    ['sha256', set.sha256 ?? 'unknown'],
    ...Object.entries(details),
    ...(set.defaultLayers ? [['default layers', describeDefaultLayers(set.defaultLayers)] as [string, string]] : []),
    [
      'layers',
      `${set.layers.length} (${set.layers[0].name} .. ${set.layers.at(-1)!.name}), ${params.toLocaleString('en-US')} parameters, float32`,
    ],
  ];
  const width = Math.max(...fields.map(([k]) => k.length)) + 2;
  return [
    ...fields.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`),
    ...set.layers.map((l) => `  ${l.name.padEnd(8)} kernel 3x3x${l.inChannels}x${l.outChannels} (HWIO)  bias ${l.outChannels}`),
    `${'loaded in:'.padEnd(width)}${loadMs.toFixed(0)} ms`,
  ];
}

/** The same as JSON (`nst weights info --json`). */
export function weightsInfoJson({ set, details, loadMs }: LoadedWeights): Record<string, unknown> {
  return {
    source: set.source,
    format: set.format,
    preprocessing: set.preprocessing,
    sha256: set.sha256 ?? null,
    details,
    defaultLayers: set.defaultLayers ?? null,
    layers: set.layers.map((l) => ({ name: l.name, kernel: [3, 3, l.inChannels, l.outChannels], bias: [l.outChannels], dtype: 'float32' })),
    loadMs: Math.round(loadMs),
  };
}

/** "content conv3_2; style conv1_1, conv2_1, conv3_1 (equal weights)" */
function describeDefaultLayers(d: DefaultLayers): string {
  const names = (layers: DefaultLayers['contentLayers']) => layers.map((l) => l.layer).join(', ');
  const equal = d.styleLayers.every((l) => l.weight === d.styleLayers[0].weight);
  return `content ${names(d.contentLayers)}; style ${names(d.styleLayers)}${equal ? ' (equal weights)' : ''}`;
}
