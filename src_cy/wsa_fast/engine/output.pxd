cdef class Output:
    # Responses and server messages encoded into connections' buffers, written once per loop iteration.
    cdef readonly object settings       # wsa_fast.config.Settings
    cdef object loop
    cdef LocalRouter router             # where messages for clients not bound here go
    cdef long long* counts              # this worker's metric slots (see Metric)
    cdef object counts_view             # the memory counts points into, kept alive
    cdef Connection reading             # whose read batch is being handled (flushed at its end)
    cdef list dirty                     # connections with output not yet written
    cdef bint flush_scheduled
    cdef list fanned_out                # receivers of a large broadcast, written FLUSH_BUDGET bytes per iteration
    cdef bint fan_out_scheduled
    cdef list waiting_senders           # their senders, not read from until fanned_out is written
    cdef object new_id                  # () -> str, in the configured id style

    cdef int reply(self, Connection conn, Str msg_id, Str to, int result, bytes code,
                   object receipt, const Str* data) except -1
    cdef int fail(self, Connection conn, WsaMsg* m, bytes code) except -1
    cdef int error_event(self, Connection conn, str code, str reason, object msg_id) except -1
    cdef int mark_dirty(self, Connection conn) except -1
    cdef int schedule_flush(self) except -1
    cdef int mark_fanned_out(self, Connection conn) except -1
    cdef int hold_until_fanned_out(self, Connection sender) except -1
