// Stands in for 'sharp' in the GPU bundles: @nst/core's image I/O imports it
// (and configures it at load: sharp.cache(...)), but the GPU tests and the
// benchmark never read or write image files, and the GPU machine has no
// node_modules. Configuration calls are no-ops; using it throws.
function sharp() {
  throw new Error('sharp is not available in the GPU test bundle');
}
export default new Proxy(sharp, { get: (target, key) => (key in target ? target[key] : () => undefined) });
