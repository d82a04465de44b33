# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot path of ``wsa-fast bench``: a picows client built to cost far less per message than any server it drives.

Cheapness comes from three habits:
- every outgoing frame is a pre-built, pre-masked template; per message only the 5 id
  characters are written (already XORed with the template's mask), then a batch of
  frames goes out in one write;
- a good reply is checked by scanning its bytes for the id (and one expected key/value),
  never JSON-parsed; only unexpected frames (fail responses, garbage) reach Python;
- accounting is a few array stores in a ring indexed by the sequence number that the id
  carries in base36, and latency is one increment in a C array laid out as an HDR histogram.

Exactly-once accounting: every sender keeps, per ring slot, the full sequence tag of the
message in flight and how many deliveries it still expects (1, or N for broadcast). Every
receiving connection keeps its own ring of tags it has seen, so a second delivery of the
same message to the same connection is a duplicate. What is still expected when the run
has drained is lost. A fail response to a message in flight ends it, counted by its code.
"""
import asyncio
import json

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int64_t
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memcpy, memcmp, memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from picows.picows cimport WSListener, WSTransport, WSFrame, WSMsgType
from picows import WSCloseCode

from wsa_fast.methods import ERROR_EVENT

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

cdef enum:
    ID_LEN = 5          # the short WSA id: five base36 characters
cdef uint32_t ID_SPACE = 36 ** 5
cdef const char* B36 = b"0123456789abcdefghijklmnopqrstuvwxyz"

# The HDR histogram layout of hdrhistogram.HdrHistogram(1, HDR_HIGHEST_NS, 3): 3 significant
# digits means 2048 sub-buckets (half of them per doubling), 32 doublings reach one hour.
HDR_LOWEST_NS = 1
HDR_HIGHEST_NS = 3_600_000_000_000
HDR_DIGITS = 3
cdef enum:
    SUB_HALF_MAG = 10                   # log2 of half the sub-bucket count
    SUB_HALF = 1 << SUB_HALF_MAG
    SUB_MASK = 2 * SUB_HALF - 1
    BUCKETS = 32
    COUNTS_LEN = (BUCKETS + 1) * SUB_HALF
cdef int64_t HIGHEST_NS = HDR_HIGHEST_NS


# What a delivery must contain besides its id.
cdef enum Check:
    CHECK_NONE = 0      # an echo server: the id is enough
    CHECK_KV = 1        # one key must hold one string value (result=success, type=event)

CHECK_ID_ONLY = CHECK_NONE
CHECK_KEY_VALUE = CHECK_KV


cdef inline double now_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


def monotonic():
    """The clock every send time and latency is taken from (seconds)."""
    return now_s()


def client_frame(bytes payload, bytes mask):
    """A masked client TEXT frame for `payload` (RFC 6455 5.2), built once per template."""
    cdef Py_ssize_t n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return header + mask + masked


# One module, included in data-flow order: C calls between the parts stay direct (no cross-module cost).
include "loadgen/scan.pyx"
include "loadgen/counts.pyx"
include "loadgen/sender.pyx"
include "loadgen/conn.pyx"
include "loadgen/pacer.pyx"
