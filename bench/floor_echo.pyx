# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The floor: a raw WebSocket echo server, the least work a gateway on picows can do per message.

Batch mode (default) builds the unmasked reply frames of one read batch in a per-connection
buffer and writes it once when picows marks the batch's last frame (`last_in_buffer`).
Single-write mode answers each message with its own `transport.send`, as a naive server would.
No JSON is touched: a WSA gateway's CPU per message minus this floor is what its
protocol work costs.
"""
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

from picows.picows cimport WSListener, WSTransport, WSFrame, WSMsgType


cdef class EchoListener(WSListener):
    cdef char* buf              # reply frames of the current read batch
    cdef Py_ssize_t buf_len     # bytes of buf in use
    cdef Py_ssize_t buf_cap     # bytes of buf allocated
    cdef bint single_write      # one write per message instead of per batch

    def __cinit__(self, bint single_write=False):
        self.single_write = single_write
        self.buf_cap = 16384
        self.buf = <char*>malloc(self.buf_cap)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.buf)

    cdef void append_frame(self, uint8_t first_byte, const char* p, Py_ssize_t n):
        cdef Py_ssize_t need = self.buf_len + n + 10
        cdef uint8_t* h
        if need > self.buf_cap:
            self.buf_cap = 2 * need
            self.buf = <char*>realloc(self.buf, self.buf_cap)
            if self.buf == NULL:
                raise MemoryError()
        h = <uint8_t*>(self.buf + self.buf_len)
        h[0] = first_byte
        if n < 126:
            h[1] = <uint8_t>n
            h += 2
        elif n < 65536:
            h[1] = 126
            h[2] = <uint8_t>(n >> 8)
            h[3] = <uint8_t>n
            h += 4
        else:
            h[1] = 127
            for i in range(8):
                h[2 + i] = <uint8_t>((<uint64_t>n) >> (56 - 8 * i))
            h += 10
        memcpy(h, p, n)
        self.buf_len = (<char*>h - self.buf) + n

    cdef void flush(self, WSTransport transport):
        if self.buf_len:
            transport._fast_write(self.buf, self.buf_len)
            self.buf_len = 0

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType t = frame.msg_type
        if t == WSMsgType.TEXT or t == WSMsgType.BINARY or t == WSMsgType.CONTINUATION:
            if self.single_write:
                transport.send(t, frame.get_payload_as_memoryview(), frame.fin)
            else:
                self.append_frame((0x80 if frame.fin else 0) | <uint8_t>t,
                                  frame.payload_ptr, frame.payload_size)
        elif t == WSMsgType.CLOSE:
            self.flush(transport)
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.last_in_buffer:
            self.flush(transport)


async def serve(str host, int port, bint single_write):
    from picows import ws_create_server

    server = await ws_create_server(lambda request: EchoListener(single_write), host, port)
    async with server:
        await server.serve_forever()
