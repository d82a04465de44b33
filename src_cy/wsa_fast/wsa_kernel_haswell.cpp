// The decoder on simdjson's haswell kernel (AVX2), picked at run time (wsa_kernels.cpp).
#define WSA_KERNEL haswell
#define WSA_KERNEL_NS kernel_haswell
#define WSA_KERNEL_TARGET "avx2,bmi,bmi2,pclmul,lzcnt,popcnt"
#include "wsa_kernel.hpp"
