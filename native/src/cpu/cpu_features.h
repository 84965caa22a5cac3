// What the processor offers the cpu engine's bf16 precision, as oneDNN sees it
// (the library that runs the convolutions), or as NST_CPU_FEATURES forces it.
//
//   NST_CPU_FEATURES=none          no native bf16 (an explicit bf16 is refused)
//   NST_CPU_FEATURES=avx512_bf16   AVX512-BF16
//   NST_CPU_FEATURES=amx           AMX-BF16 and AVX512-BF16
// (auto is fp32 on every one of them: engine.h's cpu_auto_precision says why.)
//
// Forcing changes only what the engine decides and says, never what oneDNN
// runs: forced bf16 on a processor without it runs oneDNN's emulated or
// reference bf16 kernels (slow; for tests of the decisions, on small sizes).
#pragma once

#include <string>

namespace nst::cpu {

struct CpuFeatures {
  bool avx512_bf16 =
      false;              // AVX512-BF16 (vdpbf16ps): Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later
  bool amx_bf16 = false;  // AMX-BF16 tiles: Intel Sapphire Rapids and later
  bool forced = false;    // set by NST_CPU_FEATURES
  std::string isa;        // oneDNN's name of the best instruction set it runs here ("avx512_core_bf16", ...)
  bool native_bf16() const { return avx512_bf16 || amx_bf16; }
  // NST_CPU_FEATURES's value that gives these features.
  std::string forced_as() const { return amx_bf16 ? "amx" : avx512_bf16 ? "avx512_bf16" : "none"; }
};

// Reads NST_CPU_FEATURES on every call (tests set it between engines);
// throws nst::Error (Unsupported, field "backend") for a value it does not know.
CpuFeatures cpu_features();

// The one-line reason a bf16 engine is refused here, naming the instructions
// that are missing; empty when bf16 runs natively.
std::string bf16_missing_reason(const CpuFeatures& features);

// A name for the instruction set of a oneDNN implementation string
// ("brgconv:avx512_core_amx_bf16" -> "AMX", "jit_bf16:avx512_core_bf16" ->
// "AVX512-BF16", "brgconv:avx512_core" -> "AVX-512", "ref:any" -> "reference").
std::string isa_display_name(const std::string& impl);

}  // namespace nst::cpu
