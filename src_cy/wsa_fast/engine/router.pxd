cdef class LocalRouter:
    # Where the session sends what no client bound here can take: on a single worker, nowhere.
    cdef Gateway gw

    cdef int relay_elsewhere(self, Connection conn, WsaMsg* m) except -1
    cdef int broadcast_elsewhere(self, const WsaMsg* m) except -1
    cdef bint answer_elsewhere(self, WsaMsg* m) except -1
    cdef bint answer_server_elsewhere(self, tuple key, const WsaMsg* m) except -1
    cdef int joined(self, Connection conn) except -1
    cdef int left(self, Connection conn) except -1
    cdef object locate(self, Str client_id)
    cdef object send(self, str client_id, int type, str method, bytes params, str msg_id)
    cdef bint busy(self) except -1
    cdef int flush(self) except -1
