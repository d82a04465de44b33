# A message crossing to another worker, as a record body: its fields as they are in a WsaMsg.
#
# The receiving worker fills a WsaMsg from it with views and no JSON parse: the sender's
# gateway already parsed and checked the message, and workers trust their NATS subjects
# (docs/cluster.md). Layout: type, from_kind, to_kind, result, flags (one byte each), then
# from, to, id, method, params, receipt, code, data, each a 4-byte little-endian length and
# its bytes (strings unescaped, params and data raw JSON). A field the JSON form would leave
# out is written empty, as the decoder leaves it.
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcpy, memset

from wsa_fast._codec cimport (
    COMPACT, EVENT, FAIL, OK, ADDR_ANONYMOUS, ADDR_BROADCAST, ADDR_ID, ADDR_SERVER, REQUEST, RESPONSE, RESULT_NONE,
    FrameBuffer, Str, WsaMsg,
)

cdef enum:
    RECORD_FIELDS = 8
    RECORD_FIXED = 5 + 4 * RECORD_FIELDS
    HAS_PARAMS = 1
    HAS_RECEIPT = 2
    RECEIPT_NULL = 4
    HAS_DATA = 8


cdef inline char* put_field(char* out, const char* p, size_t n) noexcept nogil:
    cdef uint32_t size = <uint32_t>n
    memcpy(out, &size, 4)
    if n:
        memcpy(out + 4, p, n)
    return out + 4 + n


cdef inline Py_ssize_t write_record(FrameBuffer box, const WsaMsg* m, Py_ssize_t header) except -1:
    """Append ``header`` bytes for the caller to fill, then ``m`` as a record body; returns the body's length."""
    cdef bint response = m.type == RESPONSE
    cdef bint has_params = not response and m.has_params
    cdef bint has_receipt = response and m.result != FAIL and m.has_receipt
    cdef bint has_data = response and m.has_data
    cdef size_t from_n = m.from_.n if m.from_kind != ADDR_SERVER else 0
    cdef size_t to_n = m.to.n if m.to_kind != ADDR_SERVER and m.to_kind != ADDR_BROADCAST else 0
    cdef size_t method_n = m.method.n if not response else 0
    cdef size_t params_n = m.params.n if has_params else 0
    cdef size_t receipt_n = m.receipt.n if has_receipt and not m.receipt_null else 0
    cdef size_t code_n = m.code.n if response and m.result == FAIL else 0
    cdef size_t data_n = m.data.n if has_data else 0
    cdef Py_ssize_t n = RECORD_FIXED + from_n + to_n + m.id.n + method_n + params_n + receipt_n + code_n + data_n
    box.reserve(header + n)
    box.size += header
    cdef char* out = box.data + box.size
    out[0] = <char>m.type
    out[1] = <char>m.from_kind
    out[2] = <char>m.to_kind
    out[3] = <char>(m.result if response else RESULT_NONE)
    out[4] = <char>((HAS_PARAMS if has_params else 0) | (HAS_RECEIPT if has_receipt else 0)
                    | (RECEIPT_NULL if has_receipt and m.receipt_null else 0) | (HAS_DATA if has_data else 0))
    out += 5
    out = put_field(out, m.from_.p, from_n)
    out = put_field(out, m.to.p, to_n)
    out = put_field(out, m.id.p, m.id.n)
    out = put_field(out, m.method.p, method_n)
    out = put_field(out, m.params.p, params_n)
    out = put_field(out, m.receipt.p, receipt_n)
    out = put_field(out, m.code.p, code_n)
    out = put_field(out, m.data.p, data_n)
    box.size += n
    return n


cdef inline bint take_field(const char* p, size_t n, size_t* pos, Str* field) noexcept nogil:
    cdef uint32_t size
    if n - pos[0] < 4:
        return False
    memcpy(&size, p + pos[0], 4)
    pos[0] += 4
    if size > n - pos[0]:
        return False
    field.p = p + pos[0]
    field.n = size
    pos[0] += size
    return True


cdef inline bint read_record(const char* p, size_t n, WsaMsg* m) noexcept nogil:
    """Fill ``m`` with views of the record body ``p[:n]``; False if it is not a well-formed record."""
    memset(m, 0, sizeof(WsaMsg))
    if n < RECORD_FIXED:
        return False
    cdef uint8_t flags = <uint8_t>p[4]
    m.type = <uint8_t>p[0]
    m.from_kind = <uint8_t>p[1]
    m.to_kind = <uint8_t>p[2]
    m.result = <uint8_t>p[3]
    if m.type < REQUEST or m.type > EVENT or m.from_kind > ADDR_ANONYMOUS or m.to_kind > ADDR_ANONYMOUS \
            or m.result > FAIL:
        return False
    m.has_params = flags & HAS_PARAMS != 0
    m.has_receipt = flags & HAS_RECEIPT != 0
    m.receipt_null = flags & RECEIPT_NULL != 0
    m.has_data = flags & HAS_DATA != 0
    cdef size_t pos = 5
    if not (take_field(p, n, &pos, &m.from_) and take_field(p, n, &pos, &m.to) and take_field(p, n, &pos, &m.id)
            and take_field(p, n, &pos, &m.method) and take_field(p, n, &pos, &m.params)
            and take_field(p, n, &pos, &m.receipt) and take_field(p, n, &pos, &m.code)
            and take_field(p, n, &pos, &m.data)):
        return False
    m.status = OK
    m.form = COMPACT        # what a record in JSON said, before records were binary
    return pos == n
