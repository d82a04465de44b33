cdef class Session(Login):
    # The routing rules: who may send what to whom (server, relay, broadcast), where responses go.
    cdef Parser parser                  # one parser for the worker: messages are handled one at a time
    cdef set connections                # every open connection, bound or not (for shutdown)
    cdef dict server_pending            # (client id, message id) -> (Connection, Future) of a server request
    cdef object authorize               # None, or a policy callable looked up once
    cdef Py_ssize_t max_message_size
    cdef int max_bad_messages
    cdef Py_ssize_t send_buffer_limit
    cdef Py_ssize_t send_buffer_cap     # unsent bytes past which a connection is cut off at once
    cdef double slow_consumer_timeout   # how long a connection may stay backed up before it is cut off
    # Limits (README table); the rate buckets are skipped entirely while rate_limited is False.
    cdef bint rate_limited
    cdef Rates rates
    cdef int max_refused                # rate-limited messages in a row before closing with 1008
    cdef Py_ssize_t max_pending         # relayed requests a client may have unanswered (0: no limit)
    cdef Py_ssize_t max_partial_memory  # bytes all unfinished fragmented messages may hold
    cdef Py_ssize_t partial_memory      # bytes they hold now
    cdef dict per_ip                    # client address -> open connections, for max_connections_per_ip
    cdef readonly bint draining         # new requests get UNAVAILABLE

    cdef int on_message(self, Connection conn, WsaMsg* m) except -1
    cdef int on_bad_message(self, Connection conn, WsaMsg* m) except -1
    cdef int to_server(self, Connection conn, WsaMsg* m) except -1
    cdef int relay(self, Connection conn, WsaMsg* m) except -1
    cdef bint admit(self, Connection conn, WsaMsg* m, object target) except -1
    cdef int broadcast_from(self, Connection conn, WsaMsg* m) except -1
    cdef Py_ssize_t fan_out(self, const WsaMsg* m, Connection skip, Connection sender) except -1
    cdef int on_response(self, Connection conn, WsaMsg* m) except -1
    cdef int answer_server(self, Connection conn, tuple key, WsaMsg* m) except -1
    cdef bytes refusal(self, Connection conn, WsaMsg* m)
    cdef int refuse(self, Connection conn, WsaMsg* m) except -1
    cdef int target_gone(self, object target, str client_id) except -1
