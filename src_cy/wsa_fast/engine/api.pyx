# The Python API of a worker's engine: wsa_fast.server makes the Gateway and hands connections to it,
# wsa_fast.app.App delegates to it, wsa_fast.cluster installs its ClusterRouter in it.
# Included into _gateway.pyx.

import asyncio

from wsa_fast._codec cimport EVENT, ADDR_BROADCAST, REQUEST, WsaMsg, dumps, str_of

from wsa_fast.errors import WSAError


cdef class Gateway(Session):
    """One worker's engine: the layers Output < Deadlines < Dispatch < Login < Session, one object."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        """``metrics``: this worker's slots (a writable int64 buffer of metric_slots()), else private ones."""
        Session.__init__(self, settings, app, authenticator, loop, metrics)

    def connection_lost(self, Connection conn):
        self.connections.discard(conn)
        # A batch cut short by a protocol error never reached its end: stop treating it as current.
        if self.reading is conn:
            self.reading = None
        if conn.client_id_b is not None:
            self.clients.unbind(conn.client_id_b, conn)
            self.router.left(conn)
        self.target_gone(conn, conn.client_id)
        if self.app is not None and conn.client_id is not None:
            self.app.client_left(conn.client_id)     # logs (and survives) a hook that raises

    def connection_counts(self, str ip):
        """Open connections here, and those of them from ``ip``: for the limits checked at the upgrade."""
        return len(self.connections), self.per_ip.get(ip, 0)

    def client(self, str client_id):
        cdef bytes id_b = client_id.encode()     # bound: the view below must not outlive it
        return self.clients.get(str_of(id_b))

    def client_ids(self):
        return self.clients.ids()

    def local_presence(self):
        """[client id, login stamp] of every client bound here, as the cluster announces them."""
        cdef Connection conn
        return [[conn.client_id, conn.stamp] for conn in self.clients.connections() if not conn.closed]

    def is_connected(self, str client_id):
        """Whether ``client_id`` is bound here or, as far as this worker knows, on another worker."""
        cdef Connection conn = self.client(client_id)
        cdef bytes id_b = client_id.encode()     # bound: the view below must not outlive it
        return (conn is not None and not conn.closed) or self.router.locate(str_of(id_b)) is not None

    def send_event(self, str client_id, str method, params=None):
        cdef Connection conn = self.client(client_id)
        cdef bytes raw = dumps(params) if params is not None else None
        if conn is not None and not conn.closed:
            write_event(conn, method, raw, self.new_id())
            self.mark_dirty(conn)
        else:
            self.router.send(client_id, EVENT, method, raw, self.new_id())

    def broadcast(self, str method, params=None):
        """Send a server event to every bound client; returns how many it reached."""
        cdef bytes raw = dumps(params) if params is not None else None
        cdef bytes method_b = method.encode(), id_b = self.new_id().encode()
        cdef WsaMsg e
        fill_from_server(&e, EVENT, ADDR_BROADCAST, b"client", method_b, raw, id_b)
        self.counts[<int>BROADCASTS_SERVER] += 1
        sent = self.fan_out(&e, None, None)
        self.router.broadcast_elsewhere(&e)
        return sent

    async def request(self, str client_id, str method, params=None, timeout=None):
        """Send a request to a client and wait for its response (a Message)."""
        cdef Connection conn = self.client(client_id)
        cdef bytes raw = dumps(params) if params is not None else None
        msg_id = self.new_id()
        key = (client_id, msg_id)
        future = self.loop.create_future()
        if conn is not None and not conn.closed:
            write_request(conn, method, raw, msg_id)
            self.mark_dirty(conn)
            self.server_pending[key] = (conn, future)
        else:
            self.server_pending[key] = (self.router.send(client_id, REQUEST, method, raw, msg_id), future)
        try:
            return await asyncio.wait_for(future, self.request_timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise WSAError("TIMEOUT", f"{client_id} did not answer {method} in time") from None
        finally:
            self.server_pending.pop(key, None)

    def start_draining(self):
        self.draining = True

    @property
    def cluster_up(self):
        """Whether clients on other workers can be reached now (always False on a single worker)."""
        return self.router.up

    def count(self, int metric, long long n=1):
        """Add ``n`` to a counter from Python (refusals at the upgrade, NATS reconnects)."""
        self.counts[metric] += n

    def refresh_gauges(self):
        """Write the gauges that are cheaper to read now than to keep up to date."""
        self.counts[<int>PENDING_REQUESTS] = len(self.pending) + len(self.server_pending)

    def busy(self):
        """Whether requests are still in flight: relayed, sent by the server, or in handlers."""
        return len(self.pending) > 0 or bool(self.tasks) or bool(self.server_pending) or self.router.busy()

    def connection_count(self):
        """Open connections, closing ones included (until their TCP connection is gone)."""
        return len(self.connections)

    def close_all(self, int code=CLOSE_GOING_AWAY, str reason="going away"):
        cdef Connection conn
        for conn in list(self.connections):
            conn.close(code, reason)
