# The access policy compiled for the hot path: principals as bits, patterns as C tables.
from libc.stdint cimport uint64_t

from wsa_fast._codec cimport Str

# What a message asks to do (indexes of Policy's per-kind tables, in wsa_fast.policy.KINDS order).
cdef enum:
    KIND_CALL = 0
    KIND_MESSAGE = 1
    KIND_BROADCAST = 2


cdef struct Pattern:
    const char* p               # into a bytes object the Policy keeps
    size_t n
    bint prefix                 # ends with '*': p[:n] is a prefix


cdef struct Rule:
    uint64_t who                # principals this rule applies to
    Pattern method
    Pattern to                  # the target id (message rules; "*" otherwise)


cdef class Policy:
    cdef readonly uint64_t[3] all_of    # per kind: principals allowed every method (and target): no lookup
    cdef Rule* rules[3]                 # per kind, rules_n[kind] of them
    cdef Py_ssize_t rules_n[3]
    cdef list keep                      # the bytes the patterns point into
    cdef dict bits                      # principal name -> its bit

    cdef uint64_t mask(self, names) except? 0
    cdef add(self, int kind, uint64_t who, str method, str to)
    cdef pattern(self, Pattern* out, str text)
    cdef bint allows(self, int kind, uint64_t principals, Str method, Str to) noexcept
