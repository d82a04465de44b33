// The decoder on simdjson's westmere kernel (SSE4.2, CLMUL), picked at run time (wsa_kernels.cpp).
#define WSA_KERNEL westmere
#define WSA_KERNEL_NS kernel_westmere
#define WSA_KERNEL_TARGET "sse4.2,pclmul,popcnt"
#include "wsa_kernel.hpp"
