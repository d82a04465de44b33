cdef class Login(Dispatch):
    # Which connection holds which client id (the local routing table), and login.
    cdef readonly ClientTable clients
    cdef object authenticator
    cdef readonly Policy policy         # the [policy] table compiled; allows everything when absent
    cdef bint reject_duplicates         # duplicate_login = "reject": a second login of an id is refused

    cdef int login(self, Connection conn, WsaMsg* m) except -1
