// "tfjs-wasm stock": the honest baseline for bench.mjs. A straightforward
// TF.js implementation of the same loss (VGG-19 conv1_1..conv5_1, avgPool,
// content + style Gram losses), tf.grad for the image gradient and tfjs's
// own Adam, on @tensorflow/tfjs-backend-wasm exactly as shipped: no thread
// patch (under Node the package runs single-threaded), tfjs's own conv
// gradients. Written here on purpose, independent of packages/tfjs.
// It exposes just the surface bench.mjs's measure() uses.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

export async function createStockBackend() {
  const tf = await import('@tensorflow/tfjs');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start');
  await tf.ready();
  const threads = wasm.getThreadsCount();
  let kernels = [];
  let biases = [];
  return {
    detail: `tfjs-wasm stock (${wasm.version_wasm}, ${threads} thread${threads === 1 ? '' : 's'})`,
    async loadWeights(weights) {
      kernels = weights.layers.map((l) => tf.tensor4d(l.kernel, [3, 3, l.inChannels, l.outChannels]));
      biases = weights.layers.map((l) => tf.tensor1d(l.bias));
    },
    async createSession({ height, width, loss }) {
      return createStockSession(tf, kernels, biases, height, width, loss);
    },
    dispose() {
      tf.disposeVariables();
      for (const t of [...kernels, ...biases]) t.dispose();
    },
  };
}

const LAYERS = [
  'conv1_1',
  'conv1_2',
  'conv2_1',
  'conv2_2',
  'conv3_1',
  'conv3_2',
  'conv3_3',
  'conv3_4',
  'conv4_1',
  'conv4_2',
  'conv4_3',
  'conv4_4',
  'conv5_1',
  'conv5_2',
  'conv5_3',
  'conv5_4',
];
const POOL_AFTER = new Set(['conv1_2', 'conv2_2', 'conv3_4', 'conv4_4']);

function createStockSession(tf, kernels, biases, height, width, loss) {
  const index = (name) => LAYERS.indexOf(name);
  const last = Math.max(...[...loss.contentLayers, ...loss.styleLayers].map((l) => index(l.layer)));

  // conv + bias + ReLU per layer, 2x2 average pooling at the end of a block.
  const activations = (x) => {
    const out = [];
    let h = x;
    for (let l = 0; l <= last; l++) {
      h = tf.relu(tf.add(tf.conv2d(h, kernels[l], 1, 'same'), biases[l]));
      out.push(h);
      if (POOL_AFTER.has(LAYERS[l]) && l < last) h = tf.avgPool(h, 2, 2, 'same');
    }
    return out;
  };
  const gram = (a) => {
    const [, h, w, c] = a.shape;
    const m = tf.reshape(a, [h * w, c]);
    return tf.div(tf.matMul(m, m, true, false), h * w);
  };

  let contentTargets = [];
  let styleTargets = [];
  let image;
  const optimizer = tf.train.adam(2.0, 0.9, 0.999, 1e-8);

  const totalLoss = (x) => {
    const acts = activations(x);
    let content = tf.scalar(0);
    loss.contentLayers.forEach((l, i) => {
      const a = acts[index(l.layer)];
      const [, h, w, c] = a.shape;
      content = tf.add(content, tf.mul(l.weight / (4 * h * w * c), tf.sum(tf.squaredDifference(a, contentTargets[i]))));
    });
    let style = tf.scalar(0);
    loss.styleLayers.forEach((l, i) => {
      const a = acts[index(l.layer)];
      const c = a.shape[3];
      style = tf.add(style, tf.mul(l.weight / (4 * c * c), tf.sum(tf.squaredDifference(gram(a), styleTargets[i]))));
    });
    return tf.add(tf.mul(loss.alpha, content), tf.mul(loss.beta, style));
  };
  // One forward + backward per step: tf.valueAndGrad is tf.grad that also returns the loss.
  const lossAndGradient = tf.valueAndGrad(totalLoss);

  return {
    async setTargets([{ content, styles }]) {
      tf.tidy(() => {
        const c = activations(tf.tensor4d(content.data, [1, content.height, content.width, 3]));
        contentTargets = loss.contentLayers.map((l) => tf.keep(c[index(l.layer)]));
        styleTargets = loss.styleLayers.map((l) =>
          tf.keep(
            styles
              .map(({ image: s, weight }) =>
                tf.mul(weight, gram(activations(tf.tensor4d(s.data, [1, s.height, s.width, 3]))[index(l.layer)])),
              )
              .reduce((a, b) => tf.add(a, b)),
          ),
        );
      });
    },
    async setImages(data) {
      image = tf.variable(tf.tensor4d(data, [1, height, width, 3]));
    },
    // Runs one Adam update per step size (tfjs's Adam keeps its own step count;
    // the bench only times the work, so the schedule's exact lr_t does not matter).
    async iterate({ stepSizes }) {
      let first;
      for (let k = 0; k < stepSizes.length; k++) {
        const value = tf.tidy(() => {
          const { value: l, grad: g } = lossAndGradient(image);
          optimizer.applyGradients([{ name: image.name, tensor: g }]);
          return l;
        });
        const v = (await value.data())[0];
        value.dispose();
        if (k === 0) first = v;
      }
      return [{ total: first }];
    },
    dispose() {
      for (const t of [...contentTargets, ...styleTargets]) t.dispose();
      image?.dispose();
    },
  };
}
