# The router: where the session sends what no client bound here can take. LocalRouter is a single
# worker's (nowhere: NOT_FOUND); ClusterRouter (cluster_router.pyx) implements the same methods
# across workers. The session calls it only after the local table had no answer, so the hot path
# pays nothing for it. Included into _gateway.pyx.

from wsa_fast._codec cimport Str, WsaMsg

from wsa_fast.errors import WSAError


cdef class LocalRouter:
    """A single worker: every client is bound here or nowhere."""

    def __init__(self, Gateway gateway):
        self.gw = gateway

    cdef int relay_elsewhere(self, Connection conn, WsaMsg* m) except -1:
        """``m`` is for a client not bound here."""
        return self.gw.fail(conn, m, NOT_FOUND)

    cdef int broadcast_elsewhere(self, const WsaMsg* m) except -1:
        """A broadcast, once fanned out here."""
        return 0

    cdef bint answer_elsewhere(self, WsaMsg* m) except -1:
        """A response no client here waits for: True if it went to the worker whose client does."""
        return False

    cdef bint answer_server_elsewhere(self, tuple key, const WsaMsg* m) except -1:
        """A response to a server request this worker did not send: True if it went to the one that did."""
        return False

    cdef int joined(self, Connection conn) except -1:
        """``conn`` was bound to its client id."""
        return 0

    cdef int left(self, Connection conn) except -1:
        """``conn``, bound to a client id, is gone."""
        return 0

    cdef object locate(self, Str client_id):
        """The RemoteClient for ``client_id`` bound on another worker, or None."""
        return None

    cdef object send(self, str client_id, int type, str method, bytes params, str msg_id):
        """Send a server request or event to a client not bound here; returns its RemoteClient."""
        raise WSAError("NOT_FOUND", f"{client_id} is not connected")

    cdef bint busy(self) except -1:
        """Whether requests from other workers are still in flight here."""
        return False

    cdef int flush(self) except -1:
        """Send what was batched for other workers during this loop iteration."""
        return 0

    @property
    def up(self):
        """Whether clients on other workers can be reached now."""
        return False
