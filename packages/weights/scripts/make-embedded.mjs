#!/usr/bin/env node
// Writes assets/vgg19-keras-blocks1-3.safetensors, the weight set shipped in
// the package, from the TF.js layers model of the Keras VGG-19 blocks 1-3
// (../shared/weights/vgg19-keras-blocks1-3 in the development checkout), and
// prints its size and SHA-256 for src/embedded.ts.
//   node packages/weights/scripts/make-embedded.mjs [source-folder] [F32|F16]
// F16 only where bench/embedded-precision.mjs shows that a 200-iteration
// render moves by less than 1e-3 (relative L2).
import { statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EMBEDDED_FILE_NAME, loadWeights, sha256File, writeSafetensors } from '@nst/weights';

const here = path.dirname(fileURLToPath(import.meta.url));
const source = process.argv[2] ?? path.resolve(here, '..', '..', '..', '..', 'shared', 'weights', 'vgg19-keras-blocks1-3');
const dtype = process.argv[3] ?? 'F32';
if (dtype !== 'F32' && dtype !== 'F16') throw new Error(`dtype ${dtype}: expected F32 or F16`);
const out = path.join(here, '..', 'assets', EMBEDDED_FILE_NAME);

const set = await loadWeights(source);
const names = set.layers.map((l) => l.name);
if (names.join(',') !== 'conv1_1,conv1_2,conv2_1,conv2_2,conv3_1,conv3_2,conv3_3,conv3_4')
  throw new Error(`${source}: expected conv1_1 .. conv3_4, got ${names.join(',')}`);

// Style on the first layer of each block, content on conv3_2: the deepest layers this set has.
const third = 1 / 3;
const defaultLayers = {
  contentLayers: [{ layer: 'conv3_2', weight: 1 }],
  styleLayers: ['conv1_1', 'conv2_1', 'conv3_1'].map((layer) => ({ layer, weight: third })),
};
await writeSafetensors(
  out,
  set.layers.flatMap((l) => [
    { name: `${l.name}.kernel`, shape: [3, 3, l.inChannels, l.outChannels], data: l.kernel, dtype },
    { name: `${l.name}.bias`, shape: [l.outChannels], data: l.bias, dtype },
  ]),
  {
    format: 'nst-vgg19-embedded',
    version: '1',
    preprocessing: JSON.stringify(set.preprocessing),
    source:
      'Keras VGG-19 ImageNet weights (keras-applications, vgg19_weights_tf_dim_ordering_tf_kernels), blocks 1-3, via a TensorFlow.js layers model',
    credit:
      'Karen Simonyan and Andrew Zisserman, Visual Geometry Group, University of Oxford: "Very Deep Convolutional Networks for Large-Scale Image Recognition" (2014)',
    license: 'CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)',
    layers: names.join(','),
    default_layers: JSON.stringify(defaultLayers),
  },
);
console.log(`${out}: ${statSync(out).size} bytes, ${dtype}, sha256 ${await sha256File(out)}`);
