// The decoder on simdjson's builtin kernel, and the run-time choice of a kernel.
//
// simdjson's On-Demand API is header code for one kernel, fixed at compile time: the builtin
// one, the best the compiler flags guarantee. For a portable x86-64 build that is the scalar
// fallback, so portable builds also hold the decoder on the SIMD kernels (wsa_kernel_*.cpp) and
// new_parser() takes the one simdjson detects on this CPU. Elsewhere (arm64, a -march build)
// the builtin kernel is already the CPU's best and is the only one.
#include <cstring>
#include <string>

#include "wsa_parse.hpp"

namespace wsa {

namespace kernel_builtin {
namespace od = simdjson::builtin::ondemand;
#include "wsa_decoder.hpp"
}  // namespace kernel_builtin

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__AVX2__)
#define WSA_DISPATCH 1
namespace kernel_icelake { Parser* make_parser(); }
namespace kernel_haswell { Parser* make_parser(); }
namespace kernel_westmere { Parser* make_parser(); }
#endif

namespace {

#define WSA_STR(x) #x
#define WSA_NAME(x) WSA_STR(x)
const char* const BUILTIN = WSA_NAME(SIMDJSON_BUILTIN_IMPLEMENTATION);

// simdjson's choice for this CPU (best supported, or SIMDJSON_FORCE_IMPLEMENTATION), if compiled in.
const char* pick() {
#ifdef WSA_DISPATCH
    const std::string active = simdjson::get_active_implementation()->name();
    for (const char* k : {"icelake", "haswell", "westmere"})
        if (active == k) return k;
#endif
    return BUILTIN;
}

}  // namespace

const char* kernel_name() {
    static const char* const chosen = pick();
    return chosen;
}

const char* compiled_kernels() {
#ifdef WSA_DISPATCH
    static const std::string all = std::string("icelake,haswell,westmere,") + BUILTIN;
    return all.c_str();
#else
    return BUILTIN;
#endif
}

Parser* new_parser() {
    const char* k = kernel_name();
#ifdef WSA_DISPATCH
    if (std::strcmp(k, "icelake") == 0) return kernel_icelake::make_parser();
    if (std::strcmp(k, "haswell") == 0) return kernel_haswell::make_parser();
    if (std::strcmp(k, "westmere") == 0) return kernel_westmere::make_parser();
#endif
    return kernel_builtin::make_parser();
}

}  // namespace wsa
