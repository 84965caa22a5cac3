#include "cpu_features.h"

#include <dnnl.hpp>

#include <cstdlib>

#include "../engine.h"

namespace nst::cpu {

static std::string isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic:
    case dnnl::cpu_isa::avx512_mic_4ops:
      return "avx512_mic";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    case dnnl::cpu_isa::all:
      break;
  }
  return "unknown";
}

// oneDNN's ISA values are nested bit sets: an ISA includes every one whose bits it has.
static bool includes(dnnl::cpu_isa isa, dnnl::cpu_isa part) {
  const auto bits = static_cast<unsigned>(isa), want = static_cast<unsigned>(part);
  return (bits & want) == want;
}

CpuFeatures cpu_features() {
  CpuFeatures f;
  // The instruction set oneDNN dispatches to: what the processor has, the
  // operating system allows (AMX needs the kernel's permission, which oneDNN
  // asks for) and DNNL_MAX_CPU_ISA permits.
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  f.isa = isa_name(isa);
  f.amx_bf16 = includes(isa, dnnl::cpu_isa::avx512_core_amx);
  f.avx512_bf16 = includes(isa, dnnl::cpu_isa::avx512_core_bf16);
  if (const char* forced = std::getenv("NST_CPU_FEATURES"); forced && *forced) {
    const std::string v = forced;
    if (v != "none" && v != "avx512_bf16" && v != "amx")
      throw Error(ErrorCode::Unsupported, "backend",
                  "cpu: NST_CPU_FEATURES must be none, avx512_bf16 or amx, got '" + v + "'");
    f.forced = true;
    f.amx_bf16 = v == "amx";
    f.avx512_bf16 = v != "none";
  }
  return f;
}

std::string bf16_missing_reason(const CpuFeatures& f) {
  if (f.native_bf16()) return "";
  return std::string(
             "cpu: bf16 needs native bf16 instructions, AMX-BF16 (amx_bf16) or AVX512-BF16 (avx512_bf16), "
             "which this processor lacks") +
         (f.forced ? " (NST_CPU_FEATURES=none)" : " (oneDNN runs " + f.isa + " here)") + ": use fp32 or auto";
}

std::string isa_display_name(const std::string& impl) {
  const auto has = [&](const char* s) { return impl.find(s) != std::string::npos; };
  if (has("amx")) return "AMX";
  if (has("avx512_core_bf16")) return "AVX512-BF16";
  if (has("avx512")) return "AVX-512";
  if (has("avx2")) return "AVX2";
  if (has("avx")) return "AVX";
  if (has("sse41")) return "SSE4.1";
  return "reference";
}

}  // namespace nst::cpu
