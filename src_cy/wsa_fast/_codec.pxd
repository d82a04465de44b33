# The compiled codec: simdjson On-Demand decode (wsa_parse.hpp) and frame encode.
from libcpp cimport bool as cbool
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t


cdef extern from "simdjson.h" namespace "simdjson":
    size_t SIMDJSON_PADDING

    cbool simdjson_validate_utf8 "simdjson::validate_utf8"(const char* p, size_t n) nogil


cdef extern from "wsa_parse.hpp" namespace "wsa":
    cdef enum Form:
        VERBOSE
        COMPACT

    cdef enum Type:
        TYPE_NONE
        REQUEST
        RESPONSE
        EVENT

    cdef enum Address:
        ADDR_ID
        ADDR_SERVER
        ADDR_BROADCAST
        ADDR_ANONYMOUS

    cdef enum Result:
        RESULT_NONE
        SUCCESS
        FAIL

    cdef enum Status:
        OK
        NOT_JSON
        INVALID

    ctypedef struct Str:
        const char* p
        size_t n

    ctypedef struct WsaMsg:
        int status
        const char* reason
        int form
        int type
        int from_kind
        int to_kind
        int result
        Str from_ "from"
        Str to
        Str id
        Str method
        Str params
        Str receipt
        Str code
        Str data
        cbool has_params
        cbool has_receipt
        cbool receipt_null
        cbool has_data
        cbool has_readable_id
        cbool has_readable_from
        Str readable_id
        Str readable_from
        int readable_type

    # One On-Demand parser of the simdjson kernel this CPU runs best (wsa_kernels.cpp picks it).
    cdef cppclass KernelParser "wsa::Parser":
        void parse(const char* buf, size_t n, size_t capacity, WsaMsg* m) nogil
    KernelParser* new_parser "wsa::new_parser"() except +
    const char* wsa_kernel_name "wsa::kernel_name"()
    const char* wsa_compiled_kernels "wsa::compiled_kernels"()
    cbool is_client_id(Str s) nogil


cdef class Parser:
    cdef KernelParser* _parser      # one On-Demand parser reused for every message
    cdef char* _buf                 # padded copy of the payload being parsed
    cdef size_t _capacity           # usable bytes of _buf, padding excluded
    cdef WsaMsg msg                 # the last result; views die at the next parse

    cdef WsaMsg* parse(self, const char* data, size_t n) except NULL
    cdef WsaMsg* parse_padded(self, const char* data, size_t n) noexcept


cdef class FrameBuffer:
    cdef char* data                 # frames waiting to be written, back to back
    cdef Py_ssize_t size            # bytes in use
    cdef Py_ssize_t capacity        # bytes allocated

    cdef int reserve(self, Py_ssize_t extra) except -1
    cdef int append(self, const char* p, Py_ssize_t n) except -1
    cdef Py_ssize_t write_json(self, const WsaMsg* m, int form) except -1
    cdef int write_frame(self, const WsaMsg* m, int form) except -1
    cdef int write_text_frame(self, const char* p, Py_ssize_t n) except -1
    cdef void _place_header(self, Py_ssize_t frame_start, int guess, Py_ssize_t n) noexcept
    cdef bytes take(self)
    cdef void release(self) noexcept


cdef inline Str str_of(bytes b) noexcept:
    """A view of ``b`` (of None: an empty one); noexcept, so no error check follows each call."""
    cdef Str s
    if b is None:
        s.p = b""
        s.n = 0
    else:
        s.p = PyBytes_AS_STRING(b)
        s.n = PyBytes_GET_SIZE(b)
    return s


cdef bint valid_utf8(const char* p, size_t n) noexcept    # simdjson's validator, for modules without simdjson
cdef object loads(Str s)                    # raw JSON span -> Python value


# What it takes to tell, after a handler ran, that the params it returned are untouched (json_values.pyx).
cdef enum:
    ECHO_DICTS = 8                          # objects followed; params with more are always re-encoded

cdef struct Echo:
    bint exact                              # dumps_plain would write the text read, byte for byte
    int n_dicts                             # objects read, in document order (a parent before its children)
    PyObject* dicts[ECHO_DICTS]             # borrowed: held by the value read as long as it is unchanged
    uint64_t versions[ECHO_DICTS]           # each one's dict version once complete

cdef object loads_echo(Str s, Echo* echo, dict spare)  # loads, noting in echo what params_untouched needs
cdef bint params_untouched(const Echo* echo, value) noexcept  # value is what loads_echo read, unchanged
cdef bytes dumps(value)                     # Python value -> compact JSON, as codec_py writes it
cdef bint dumps_plain(FrameBuffer out, value) except -1  # the same appended to out; False: leave it to dumps
cdef object to_message(const WsaMsg* m)     # WsaMsg -> wsa_fast.message.Message


# How a handler's outcome is answered, for the gateway and the client alike (outcome_kind).
cpdef enum Outcome:
    OUTCOME_FAIL                # an exception: fail, with fail_code_of(it)
    OUTCOME_EMPTY               # None: success
    OUTCOME_RECEIPT             # a str: success, with it as the receipt
    OUTCOME_DATA                # any other value: success, with it as the data (INTERNAL_ERROR if not JSON)

cpdef int outcome_kind(outcome) except -1
cpdef str fail_code_of(BaseException error)
