// One translation unit of the decoder on one simdjson x86-64 kernel, for portable builds.
//
// The includer defines WSA_KERNEL (simdjson's name for the kernel), WSA_KERNEL_NS (our namespace)
// and WSA_KERNEL_TARGET (the instruction sets its code is compiled for). simdjson.h holds the
// On-Demand code of only its builtin kernel, so this unit makes that kernel the builtin one, and
// compiles the decoder in the kernel's target region: the CPU needs those instructions only when
// wsa_kernels.cpp picks this kernel at run time. A -march build with AVX2 or more compiles nothing here.
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__AVX2__)
#define WSA_DISPATCHED_KERNEL 1
#define SIMDJSON_BUILTIN_IMPLEMENTATION WSA_KERNEL
// Inline, not always_inline: std::pair's constructor (simdjson's `field`) is outside the target
// region, and GCC refuses to always-inline a kernel function there; the decoder's parse() is
// `flatten`, which inlines the kernel's code into it again.
#define simdjson_inline inline
#include "wsa_parse.hpp"

SIMDJSON_TARGET_REGION(WSA_KERNEL_TARGET)
namespace wsa {
namespace WSA_KERNEL_NS {
namespace od = simdjson::WSA_KERNEL::ondemand;
#include "wsa_decoder.hpp"
}  // namespace WSA_KERNEL_NS
}  // namespace wsa
SIMDJSON_UNTARGET_REGION
#endif
