/**
 * @nst/weights: VGG-19 weight sets from every file format users have, the
 * safetensors cache, seeded random weights, and the download of the
 * canonical files.
 */
export { loadWeights, loadWeightsDetailed, type LoadedWeights } from './load.js';
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
  type CacheImport,
} from './cache.js';
export { PREPROCESSING_CHOICES, preprocessingByName } from './preprocessing.js';
export { parseSafetensors, writeSafetensors, readSafetensors } from './safetensors.js';
export { registerFormat, registeredFormats, type WeightFormat, type LoadOptions, type LoadedFile, type Probe } from './registry.js';
export { FormatError, WeightsError, type WeightsErrorCode } from './errors.js';
export { MEMORY_BUDGET_BYTES } from './budget.js';
export {
  fetchWeights,
  fetchWeightsDetailed,
  ensureDefaultWeights,
  askOnTerminal,
  findSource,
  sourceUrls,
  WeightsUnreachableError,
  WEIGHT_SOURCES,
  type WeightSource,
  type FetchOptions,
  type FetchResult,
  type EnsureOptions,
} from './fetch.js';
export { describeWeights, describePreprocessing, weightsInfoJson } from './describe.js';
export { compareKernels, type KernelRelation } from './compare.js';
export { floatToHalf, halfToFloat, roundToHalf } from './bytes.js';
export {
  EMBEDDED_SOURCE,
  EMBEDDED_FILE_NAME,
  EMBEDDED_SHA256,
  embeddedWeightsPath,
  verifiedEmbeddedPath,
  verifySha256,
} from './embedded.js';
export { parseDefaultLayers, DEFAULT_LAYERS_KEY } from './cache.js';
