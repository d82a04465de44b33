// The decoder on simdjson's icelake kernel (AVX-512), picked at run time (wsa_kernels.cpp).
#define WSA_KERNEL icelake
#define WSA_KERNEL_NS kernel_icelake
#define WSA_KERNEL_TARGET "avx512f,avx512dq,avx512cd,avx512bw,avx512vbmi,avx512vbmi2,avx512vl,avx2,bmi,bmi2,pclmul,lzcnt,popcnt"
#include "wsa_kernel.hpp"
