# The parts of picows that are not its public API and that the gateway's hot path uses, in one place.
# picows is pinned to one version (pyproject.toml, build and runtime alike) and `wsa-fast serve`
# refuses to start on any other (wsa_fast/picows_pin.py). Before moving the pin, check each item
# below against the new release; Cython only warns at import when a cimported class's layout changes.
#
# Also relied upon, read through picows's public .pxd: a WSFrame (payload_ptr, payload_size, fin,
# msg_type, last_in_buffer) points into picows's read buffer and is valid only during on_ws_frame.
# The gateway copies every payload before the callback returns (Parser.parse, or the fragments
# buffer), so it relies neither on the frame outliving the call nor on any bytes after the payload.
# The FrameGate (_frame_gate.pyx) relies on WSProtocol's constructor and buffer protocol; see there.
from picows.picows cimport MemoryBuffer, WSTransport


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
