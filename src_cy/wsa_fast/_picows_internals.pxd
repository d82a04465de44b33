# The parts of picows that are not its public API and that the gateway relies on, in one place:
# nothing else in src_cy/ touches them. picows is pinned to one version (pyproject.toml, build and
# runtime alike) and `wsa-fast serve` refuses to start on any other (wsa_fast/picows_pin.py). Before
# moving the pin, check each item below against the new release; Cython only warns at import when a
# cimported class's layout changes. Each item says what breaks if picows changes it.
#
# Relied upon through picows's public .pxd: a WSFrame (payload_ptr, payload_size, fin, msg_type,
# last_in_buffer) points into picows's read buffer and is valid only during on_ws_frame. The engine
# copies every payload before the callback returns (Parser.parse, or the fragments buffer).
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from picows.picows cimport MemoryBuffer, WSTransport


# The read buffer: WSProtocol.get_buffer() hands the transport picows's own read buffer, and picows
# 2.3.1 keeps 256 spare bytes after the data in it. The FrameGate reads the bytes there, in place,
# between get_buffer and buffer_updated (before picows parses them): breaks if picows starts copying
# from a buffer of its own. Nothing relies on the 256 spare bytes: the engine parses a padded copy
# (SIMDJSON_PADDING of its own), so a smaller padding breaks nothing.


cdef inline int write_raw(WSTransport transport, char* data, Py_ssize_t size) except -1:
    # WSTransport._fast_write (private): send() straight from our buffer, copying into the transport
    # only what the socket refuses. Breaks if renamed, if it keeps `data` past the call (we free or
    # reuse it at once), or if it starts adding a frame header (our buffer holds whole frames).
    transport._fast_write(data, size)
    return 0


cdef inline int shrink_send_scratch(WSTransport transport) except -1:
    # WSTransport._write_buffer (private): picows's 1 KiB scratch for frames it builds itself (here
    # only CLOSE); 64 bytes suffice because MemoryBuffer grows on demand. Breaks if picows stops
    # growing it or keeps data in it between calls.
    transport._write_buffer = MemoryBuffer(64)
    return 0


cdef inline object new_server_protocol(listener_factory, logger, double handshake_timeout, Py_ssize_t max_frame_size,
                                       Py_ssize_t read_buffer_init_size):
    # WSProtocol (private: in neither picows.pxd nor picows.pyi), built as picows.ws_create_server
    # builds it (api.py, ws_protocol_factory), so the FrameGate can sit in front of it. Its arguments
    # are positional and change between releases: a mismatch fails every connection with a TypeError
    # or, worse, silently swaps two settings.
    from picows.picows import WSProtocol
    return WSProtocol(
        None, None, False, listener_factory, logger,
        True,                       # disconnect_on_exception
        handshake_timeout,
        False, 20, 20, 1,           # picows's auto-ping: off, the FrameGate's Sweeper pings
        True,                       # answer PING with PONG
        max_frame_size,
        None,                       # extra headers
        read_buffer_init_size,
    )


cdef inline WSTransport protocol_transport(protocol):
    # WSProtocol.transport (a readonly cdef attribute, undocumented): picows's transport, set in
    # connection_made. Breaks if renamed or set later than connection_made.
    return protocol.transport


cdef inline object protocol_listener(protocol):
    # WSProtocol.listener (a readonly cdef attribute, undocumented): our Connection once the upgrade
    # is done, else None. Breaks if renamed.
    return protocol.listener


# WSProtocol._read_buffer (private; WSProtocol is not in picows's .pxd): 2 KiB at least per
# connection, which the FrameGate frees while a connection is quiet. Found once per connection as
# the only MemoryBuffer the protocol refers to (gc.get_referents(protocol)); None if that changes,
# and then nothing is freed. Breaks if picows reads or writes the buffer outside get_buffer and
# buffer_updated, or keeps bytes in it between reads when the FrameGate stands between frames
# (picows moves an unfinished frame to the start and parses from offset 0 once all is parsed).
cdef enum:
    READ_BUFFER_SIZE = 2048             # WSProtocol's minimum


cdef inline MemoryBuffer find_read_buffer(list referents):
    found = None
    for referent in referents:
        if type(referent) is MemoryBuffer:
            if found is not None:
                return None
            found = referent
    return found


cdef inline int release_read_buffer(MemoryBuffer buffer) noexcept:
    PyMem_Free(buffer.data)
    buffer.data = NULL
    buffer.size = 0
    buffer.capacity = 0
    return 0


cdef inline int restore_read_buffer(MemoryBuffer buffer) except -1:
    # As WSProtocol.__init__ makes it: 256 bytes left free for picows's SIMD parsers.
    buffer.data = <char*>PyMem_Malloc(READ_BUFFER_SIZE)
    if buffer.data == NULL:
        raise MemoryError("cannot allocate a read buffer")
    buffer.capacity = READ_BUFFER_SIZE
    buffer.size = READ_BUFFER_SIZE - 256
    return 0


cdef inline int drop_upgrade_extras(WSTransport transport, object done_future) except -1:
    # WSTransport.listener_proxy (a weakref proxy, used only by measure_roundtrip_time) and
    # disconnected_future (awaited only by wait_disconnected; connection_lost resolves it unless it
    # is done): the gateway uses neither, and they cost 0.2 KiB per connection. A shared done
    # future stands in. Breaks if picows starts using either on its own.
    transport.listener_proxy = None
    transport.disconnected_future = done_future
    return 0


# picows's unmask kernel. picows 2.3.1 XORs a client's payload with its mask in place, 64 bytes at a
# time, through a function pointer it picks at import (mask_dispatch.c: avx512, avx2 or sse2); every
# one of them writes with non-temporal (streaming) stores, which evict the payload from the cache just
# before the gateway reads it: a relay worker spent 16% of its CPU on that first read. This kernel does
# the same work with ordinary stores (the compiler vectorizes the loop). wsa_fast/picows_unmask.py puts
# it in picows's pointer, after checking that the pointer holds what picows chose. Breaks, harmlessly
# (the swap is skipped), if the pointer or picows's get_apply_mask_fast_fn is renamed; breaks for real
# if picows starts calling the pointer with another signature or for anything but whole 64-byte blocks.
cdef inline size_t unmask_cached(uint8_t* data, size_t size, size_t start, uint32_t mask,
                                 uint8_t* out) noexcept nogil:
    # picows's apply_mask_fn contract: from `start`, every whole 64-byte block; returns where it stopped.
    cdef size_t end = start + ((size - start) & ~(<size_t>63))
    cdef uint64_t mask8 = (<uint64_t>mask << 32) | mask
    cdef uint64_t word
    cdef size_t i = start
    while i < end:
        memcpy(&word, data + i, 8)
        word ^= mask8
        memcpy(out + i, &word, 8)
        i += 8
    return end
