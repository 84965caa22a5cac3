/**
 * @nst/native: the C++ engines (cpu on oneDNN, cuda) behind core's Backend
 * seam, and the loader that says in one line why they are unavailable.
 */
export * from './addon.js';
export { createNativeBackend, type NativeBackendOptions } from './backend.js';
export { openCheckedCudaBackend, checkedCudaBackend, type CudaCheckOptions } from './cuda-check.js';
