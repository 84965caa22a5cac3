/** Imported first by emulated test files: the addon loader then picks the CPU stand-in build (native/build-emulated). */
process.env.NST_CUDA_EMULATION = '1';
