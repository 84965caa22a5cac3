/**
 * @nst/weights: VGG-19 weight sets from every file format users have, the
 * safetensors cache, seeded random weights, and the download of the
 * canonical files.
 */
export { loadWeights, loadWeightsDetailed } from './load.js';
export { chooseWeights } from './choose.js';
export { randomWeights } from './random.js';
export {
  cacheDir,
  cachePath,
  resolveDefaultWeights,
  writeCache,
  importToCache,
  sha256File,
  CACHE_FILE_NAME,
} from './cache.js';
export { PREPROCESSING_CHOICES, preprocessingByName } from './preprocessing.js';
export { writeSafetensors, readSafetensors } from './safetensors.js';
export { WeightsError } from './errors.js';
export { MEMORY_BUDGET_BYTES } from './budget.js';
export {
  fetchWeightsDetailed,
  ensureDefaultWeights,
  askOnTerminal,
  findSource,
  WeightsUnreachableError,
  WEIGHT_SOURCES,
  type WeightSource,
} from './fetch.js';
export { describeWeights, describePreprocessing, weightsInfoJson } from './describe.js';
export { compareKernels } from './compare.js';
export { floatToHalf, halfToFloat, roundToHalf } from './bytes.js';
export { EMBEDDED_SOURCE, EMBEDDED_SHA256, embeddedWeightsPath, verifySha256 } from './embedded.js';
export { parseDefaultLayers } from './cache.js';
