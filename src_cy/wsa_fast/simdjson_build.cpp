// Compiles simdjson's amalgamated sources, shipped in the pysimdjson wheel (on the include path).
#include "simdjson.cpp"
