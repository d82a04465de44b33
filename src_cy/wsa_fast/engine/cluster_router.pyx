# The cluster router: clients on other workers, reached over NATS (wsa_fast.cluster runs the presence
# protocol and the connection). Records for another worker are batched per worker and published once
# per loop iteration; it holds the only copy of presence (which worker holds which id).
# Included into _gateway.pyx.

from libc.stdint cimport uint32_t
from libc.string cimport memcpy, memmove
from wsa_fast._codec cimport (
    FAIL, ADDR_BROADCAST, ADDR_ID, ADDR_SERVER, REQUEST, RESPONSE, FrameBuffer, Str, WsaMsg, str_of, to_message,
)
from wsa_fast._record cimport read_record, write_record
from wsa_fast._routing cimport ClientTable, PendingTable, RemoteWorker, RemoteClient

from wsa_fast.errors import WSAError

# A batch between workers is records back to back: a tag byte, a 4-byte little-endian
# length, and the message's fields with its from and to already set (_record.pxd).
cdef Py_ssize_t RECORD_HEADER = 5
cdef char TAG_MESSAGE = b'M'          # deliver this message
cdef char TAG_BOUNCE = b'N'           # this message you sent found no such client here
# A batch is published before the end of the loop iteration once it is this big.
cdef Py_ssize_t BATCH_LIMIT = 65536


cdef class ClusterRouter(LocalRouter):
    """Routes to the workers of a cluster; made by wsa_fast.cluster.Cluster, it becomes the gateway's router."""

    def __init__(self, Gateway gateway, cluster):
        LocalRouter.__init__(self, gateway)
        self.cluster = cluster  # from the start: batches may come in before the NATS handshake ends
        self.writer = None
        self.nats_up = False
        self.remote = ClientTable()
        self.workers = {}
        self.everyone = None
        self.dirty_workers = []
        self.inbound = PendingTable()
        self.remote_server_requests = {}
        self.batch_limit = BATCH_LIMIT
        self.max_payload = BATCH_LIMIT
        gateway.router = self

    # ---- the router's methods (router.pyx says what each is for) ----

    cdef int relay_elsewhere(self, Connection conn, WsaMsg* m) except -1:
        """Relay to a client on another worker; the pending entry (and its deadline) stays here."""
        cdef RemoteClient target = self.remote.get(m.to)
        if target is None:
            return self.gw.fail(conn, m, NOT_FOUND)
        if not self.nats_up or not target.worker.reachable:
            return self.gw.fail(conn, m, UNAVAILABLE)
        if not self.gw.admit(conn, m, target):
            return 0
        if not self.forward(target.worker, TAG_MESSAGE, m):
            if m.type == REQUEST:
                self.gw.pending.pop(m.from_, m.to, m.id)
            return self.gw.fail(conn, m, UNAVAILABLE)
        self.gw.counts[<int>RELAYS_REMOTE] += 1
        return 0

    cdef int broadcast_elsewhere(self, const WsaMsg* m) except -1:
        if self.nats_up:
            self.forward(self.everyone, TAG_MESSAGE, m)
        return 0

    cdef bint answer_elsewhere(self, WsaMsg* m) except -1:
        # A request from another worker: the answer goes back to it (where its TIMEOUT is decided).
        origin = self.inbound.pop(m.to, m.from_, m.id)
        if origin is None:
            return False
        self.forward(<RemoteWorker>origin, TAG_MESSAGE, m)
        return True

    cdef bint answer_server_elsewhere(self, tuple key, const WsaMsg* m) except -1:
        if not self.remote_server_requests:
            return False
        origin = self.remote_server_requests.pop(key, None)
        if origin is None:
            return False
        self.forward((<tuple>origin)[0], TAG_MESSAGE, m)
        return True

    cdef int joined(self, Connection conn) except -1:
        # Announced once the app's on_join hook accepted it: other workers never see a login that is undone.
        self.cluster.joined(conn.client_id, conn.stamp)
        return 0

    cdef int left(self, Connection conn) except -1:
        if self.remote_server_requests:
            for key in [key for key in self.remote_server_requests if key[0] == conn.client_id]:
                del self.remote_server_requests[key]
        self.cluster.left(conn.client_id, conn.stamp)
        self.inbound.drop_target(conn)      # the requesters' workers hear of it as a logout: GONE
        return 0

    cdef object locate(self, Str client_id):
        return self.remote.get(client_id)

    cdef object send(self, str client_id, int type, str method, bytes params, str msg_id):
        cdef WsaMsg e
        cdef bytes to_b = client_id.encode(), method_b = method.encode(), id_b = msg_id.encode()
        cdef RemoteClient target = self.remote.get(str_of(to_b))
        if target is None:
            raise WSAError("NOT_FOUND", f"{client_id} is not connected")
        if not self.nats_up or not target.worker.reachable:
            raise WSAError("UNAVAILABLE", f"{client_id} is on another worker, unreachable over NATS")
        fill_from_server(&e, type, ADDR_ID, to_b, method_b, params, id_b)
        if not self.forward(target.worker, TAG_MESSAGE, &e):
            raise WSAError("UNAVAILABLE", "the message is too big to cross to another worker")
        return target

    cdef bint busy(self) except -1:
        return len(self.inbound) > 0 or bool(self.remote_server_requests)

    cdef int flush(self) except -1:
        cdef RemoteWorker worker
        if not self.dirty_workers:
            return 0
        # Presence first: a record may name a client whose login the receiver must know of.
        self.cluster.flush_presence()
        workers = self.dirty_workers
        self.dirty_workers = []
        for worker in workers:
            worker.dirty = False
            if worker.outbox.size:
                self.publish_batch(worker, worker.outbox.size)
        return self.send_batches()

    # ---- records to other workers ----

    cdef bint forward(self, RemoteWorker worker, char tag, const WsaMsg* m) except -1:
        """Append a record to ``worker``'s batch; False if it can never fit in one NATS message."""
        cdef FrameBuffer box = worker.outbox
        cdef Py_ssize_t start = box.size
        cdef uint32_t n = <uint32_t>write_record(box, m, RECORD_HEADER)
        box.data[start] = tag
        memcpy(box.data + start + 1, &n, 4)     # little-endian on every platform we build for
        if box.size > self.max_payload:
            if box.size - start > self.max_payload:
                box.size = start
                log.warning("a %d-byte message cannot cross to another worker: the NATS server's "
                            "max_payload is %d", n, self.max_payload)
                return False
            self.publish_batch(worker, start)
        if box.size >= self.batch_limit:
            self.publish_batch(worker, box.size)
        if not worker.dirty:        # its batch, or the PUB commands it is in, go at the end of this iteration
            worker.dirty = True
            self.dirty_workers.append(worker)
            self.gw.schedule_flush()
        return True

    cdef int publish_batch(self, RemoteWorker worker, Py_ssize_t upto) except -1:
        """Publish the first ``upto`` bytes of ``worker``'s batch (written by send_batches once this loop
        iteration ends: ``worker`` is dirty)."""
        cdef FrameBuffer box = worker.outbox
        self.writer.add(worker.subject, box.data, upto)
        memmove(box.data, box.data + upto, box.size - upto)
        box.size -= upto
        return 0

    cdef int send_batches(self) except -1:
        """Write the batches published so far; records that cannot go are failed here."""
        cdef Py_ssize_t pos = 0, size
        unsent = self.writer.send() if self.writer is not None else None
        if unsent is not None:
            while (size := next_payload(unsent, len(unsent), &pos)) >= 0:
                self.read_batch(<const char*>unsent + pos, size, None, True)
                pos += size + 2
        return 0

    # ---- records from other workers ----

    cdef int take_batch(self, const char* data, Py_ssize_t n, const char* reply, Py_ssize_t reply_n) except -1:
        """A batch from another worker, a view of the NATS read buffer (``reply`` is its subject, for bounces)."""
        cdef RemoteWorker worker = None
        if self.writer is None:
            # Subscribed, the NATS handshake not yet over: nobody knows this worker's subject, so only
            # broadcasts come, and it has no client to give them to.
            return 0
        if reply != NULL and reply_n:
            origin = reply[:reply_n]
            worker = self.workers.get(origin)
            if worker is None:
                worker = self.cluster.worker_for_subject(origin)
        return self.read_batch(data, n, worker, False)

    cdef int read_batch(self, const char* p, Py_ssize_t n, RemoteWorker origin, bint unsent) except -1:
        """Handle each record of a batch received from ``origin``, or of one that could not be sent."""
        cdef Py_ssize_t pos = 0
        cdef uint32_t size
        cdef char tag
        cdef WsaMsg record
        cdef WsaMsg* m = &record
        cdef bint readable
        while pos + RECORD_HEADER <= n:
            tag = p[pos]
            memcpy(&size, p + pos + 1, 4)
            pos += RECORD_HEADER
            if size > n - pos:
                log.error("dropping a truncated batch from %s", origin)
                return 0
            readable = read_record(p + pos, size, m)
            pos += size
            if not readable:
                log.error("dropping an unreadable record from %s", origin)
            elif unsent:
                self.bounced(m, UNAVAILABLE)
            elif tag == TAG_MESSAGE:
                self.deliver(m, origin)
            elif tag == TAG_BOUNCE:
                self.bounced(m, NOT_FOUND)
        return 0

    cdef int deliver(self, WsaMsg* m, RemoteWorker origin) except -1:
        """A message another worker routed here: its sender was checked there."""
        cdef Connection target
        if m.type == RESPONSE:
            if m.to_kind == ADDR_SERVER:
                waiting = self.gw.server_pending.get((text(m.from_), text(m.id)))
                if waiting is None or (<tuple>waiting)[1].done():
                    self.gw.counts[<int>DROPPED_RESPONSES] += 1
                else:
                    (<tuple>waiting)[1].set_result(to_message(m))
                return 0
            target = self.gw.pending.pop(m.to, m.from_, m.id)
            if target is None or target.closed:
                self.gw.counts[<int>DROPPED_RESPONSES] += 1
                return 0
        elif m.to_kind == ADDR_BROADCAST:
            self.gw.fan_out(m, self.gw.clients.get(m.from_), None)
            return 0
        else:
            target = self.gw.clients.get(m.to)
            if target is None or target.closed:
                if origin is not None:
                    self.forward(origin, TAG_BOUNCE, m)
                return 0
            if m.type == REQUEST and origin is not None:
                if m.from_kind == ADDR_SERVER:
                    self.remote_server_requests[(text(m.to), text(m.id))] = (
                        origin, monotonic() + self.gw.request_timeout)
                elif not self.inbound.add(m.from_, m.to, m.id, origin, target, monotonic() + self.gw.request_timeout):
                    # Sent again after the requester's side ended the first (TIMEOUT): the newer one is owed.
                    self.inbound.pop(m.from_, m.to, m.id)
                    self.inbound.add(m.from_, m.to, m.id, origin, target, monotonic() + self.gw.request_timeout)
        target.out.write_frame(m, target.form)
        self.gw.counts[OUT_REQUEST + m.type - REQUEST] += 1
        return self.gw.mark_dirty(target)

    cdef int bounced(self, WsaMsg* m, bytes code) except -1:
        """A message sent to another worker did not arrive (``code``): its sender gets the one answer."""
        cdef Connection sender
        if m.type == RESPONSE or m.to_kind == ADDR_BROADCAST:
            return 0        # nobody waits on these; a lost response ends as the requester's TIMEOUT
        if m.from_kind == ADDR_SERVER:
            waiting = self.gw.server_pending.get((text(m.to), text(m.id)))
            if waiting is not None and not (<tuple>waiting)[1].done():
                (<tuple>waiting)[1].set_exception(WSAError(code.decode(), f"{text(m.to)} is not reachable"))
            return 0
        if m.type == REQUEST:
            sender = self.gw.pending.pop(m.from_, m.to, m.id)
        else:
            sender = self.gw.clients.get(m.from_)
        if sender is not None and not sender.closed:
            self.gw.reply(sender, m.id, m.from_, FAIL, code, None, NULL)
        return 0

    # ---- wsa_fast.cluster drives these ----

    def attach(self, RemoteWorker everyone, write, bytes reply, Py_ssize_t max_payload):
        """Connected to NATS: ``write(commands)`` sends to it (False if it cannot), ``reply`` is this worker's
        subject (where bounces come back), and how big a NATS message may be."""
        self.everyone = everyone
        self.writer = NatsWriter(write, reply)
        self.max_payload = max_payload
        self.batch_limit = min(BATCH_LIMIT, max_payload)

    @property
    def up(self):
        return self.nats_up

    @up.setter
    def up(self, bint up):
        self.nats_up = up
        self.gw.counts[<int>NATS_CONNECTED] = up

    def add_worker(self, RemoteWorker worker):
        self.workers[worker.subject] = worker

    def remove_worker(self, RemoteWorker worker):
        self.workers.pop(worker.subject, None)

    def remote_client(self, str client_id):
        cdef bytes id_b = client_id.encode()     # bound: the view below must not outlive it
        return self.remote.get(str_of(id_b))

    def clients_on(self, RemoteWorker worker):
        """The clients bound on ``worker``'s worker, as far as this worker knows."""
        cdef RemoteClient client
        return [client for client in self.remote.connections() if client.worker is worker]

    def add_remote(self, RemoteClient client):
        """Record where ``client`` is; an entry it replaces (the id moved) is gone."""
        previous = self.remote.bind(client.client_id_b, client)
        if previous is not None and previous is not client:
            self.gw.target_gone(previous, (<RemoteClient>previous).client_id)

    def drop_remote(self, RemoteClient client):
        if self.remote.unbind(client.client_id_b, client):
            self.gw.target_gone(client, client.client_id)

    def purge_requests(self):
        """Forget requests from other workers that their targets never answered."""
        now = monotonic()
        self.inbound.expire(now)
        stale = [key for key, (origin, deadline) in self.remote_server_requests.items() if deadline < now]
        for key in stale:
            del self.remote_server_requests[key]
