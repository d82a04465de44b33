cdef class Connection(WSListener):
    cdef Gateway gw
    cdef readonly WSTransport transport
    cdef readonly int form              # VERBOSE or COMPACT, fixed at the upgrade
    cdef bytes client_id_b              # the bound id (keeps the routing table's key alive)
    cdef readonly str client_id         # the same, as str; None while anonymous
    cdef FrameBuffer out                # frames to write at the end of the batch
    cdef list shared                    # large broadcasts' frames (shared), what came before each: sent before out
    cdef FrameBuffer fragments          # a fragmented message being reassembled
    cdef bint in_fragments
    cdef bint text                      # the message being read came in TEXT frames (UTF-8 is then a must)
    cdef object close_timer             # drops TCP if the peer does not answer our CLOSE
    cdef bint dirty                     # already listed in gw.dirty
    cdef readonly bint closed           # no more input handled, no more output written
    cdef bint login_pending             # an asynchronous login is running
    cdef readonly long long stamp       # when it was bound (ns since the epoch), for cross-worker duplicates
    cdef int bad_in_row                 # consecutive undecodable messages
    # Flow control (docs/protocol.md "Overload").
    cdef readonly bint backed_up        # its unsent bytes passed send_buffer_limit and have not drained
    cdef object slow_timer              # cuts it off if it stays backed up for slow_consumer_timeout
    cdef set held                       # senders not read from until this connection drains
    cdef int holds                      # reasons not to read it (backed-up receivers, a fan-out, a turn)
    cdef uint64_t principals            # which of the policy's ids and roles this client is (bit 0: anyone)
    # Rate limits: token buckets refilled on use, and refusals in a row.
    cdef Buckets tokens
    cdef int refused_in_row
    cdef readonly str ip                # the client's address, counted for max_connections_per_ip

    cdef int handle(self, const char* data, Py_ssize_t n, bint padded) except -1
    cdef int flush(self) except -1
    cdef bint bind(self, str client_id) except -1
    cdef int close(self, int code, str reason) except -1
    cdef int hold(self, Connection sender) except -1
    cdef int release_held(self) except -1
    cdef int cut_off(self, str why) except -1
    cdef int on_close(self, WSTransport transport, WSFrame frame) except -1
    cdef bint add_fragment(self, WSFrame frame) except -1
    cdef int drop_fragments(self) except -1
