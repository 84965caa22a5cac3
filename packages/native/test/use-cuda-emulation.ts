/** Imported first by the emulated test files: the addon loader then picks the CPU stand-in build. */
process.env.NST_CUDA_EMULATION = '1';
