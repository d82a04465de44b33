# The parts of picows that are not its public API and that the gateway relies on, in one place:
# nothing else in src_cy/ touches them. picows is pinned to one version (pyproject.toml, build and
# runtime alike) and `wsa-fast serve` refuses to start on any other (wsa_fast/picows_pin.py). Before
# moving the pin, check each item below against the new release; Cython only warns at import when a
# cimported class's layout changes. Each item says what breaks if picows changes it.
#
# Relied upon through picows's public .pxd: a WSFrame (payload_ptr, payload_size, fin, msg_type,
# last_in_buffer) points into picows's read buffer and is valid only during on_ws_frame. The engine
# copies every payload before the callback returns (Parser.parse, or the fragments buffer).
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


cdef inline object new_server_protocol(listener_factory, logger, double handshake_timeout, double ping_interval,
                                       double ping_timeout, Py_ssize_t max_frame_size,
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
        # Auto-ping a connection idle for ping_interval, closed (1001) without a PONG within ping_timeout.
        ping_interval > 0, ping_interval if ping_interval > 0 else 20, ping_timeout, 1,   # 1: PING_WHEN_IDLE
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
