# cython: language_level=3, boundscheck=False, wraparound=False
"""Routing tables for one worker: bound client ids, and relayed requests awaiting answers.

Both are C++ maps so that the per-message lookups made with a freshly parsed id (a view
into the parser's buffer) create no Python object.
"""
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from cython.operator cimport dereference as deref, preincrement as inc


cdef inline string_view view_of(Str s) noexcept:
    return string_view(s.p, s.n)


cdef class ClientTable:
    """Client id -> the connection bound to it on this worker."""

    def __dealloc__(self):
        for item in self._by_id:
            Py_DECREF(<object>item.second)
        self._by_id.clear()

    def __len__(self):
        return self._by_id.size()

    cdef object get(self, Str client_id):
        it = self._by_id.find(view_of(client_id))
        if it == self._by_id.end():
            return None
        return <object>deref(it).second

    cdef object bind(self, bytes client_id, object conn):
        """Bind ``client_id`` (kept alive by ``conn``) to ``conn``; returns the connection it replaces."""
        cdef string_view key = string_view(<const char*>client_id, len(client_id))
        previous = None
        it = self._by_id.find(key)
        if it != self._by_id.end():
            previous = <object>deref(it).second
            Py_DECREF(previous)
            self._by_id.erase(it)
        Py_INCREF(conn)
        self._by_id[key] = <PyObject*>conn
        return previous

    cdef bint unbind(self, bytes client_id, object conn) except -1:
        """Forget ``client_id`` if ``conn`` still holds it."""
        it = self._by_id.find(string_view(<const char*>client_id, len(client_id)))
        if it == self._by_id.end() or deref(it).second != <PyObject*>conn:
            return False
        self._by_id.erase(it)
        Py_DECREF(conn)
        return True

    cdef list connections(self):
        return [<object>item.second for item in self._by_id]

    def ids(self):
        return [item.first.data()[:item.first.size()].decode() for item in self._by_id]


# Separates the parts of a pending key; no client id or message id contains it.
cdef char SEPARATOR = 0


cdef inline void make_key(string* key, Str requester, Str target, Str msg_id) noexcept:
    key.clear()
    key.append(requester.p, requester.n)
    key.push_back(SEPARATOR)
    key.append(target.p, target.n)
    key.push_back(SEPARATOR)
    key.append(msg_id.p, msg_id.n)


cdef inline bytes id_of_key(const string& key):
    """The message id: what follows the second separator of a key."""
    cdef size_t first = key.find(SEPARATOR)
    cdef size_t second = key.find(SEPARATOR, first + 1)
    return key.substr(second + 1)


# Answered requests' deadlines are compacted away once there are this many and they are the majority.
cdef Py_ssize_t STALE_MIN = 1024


cdef class PendingTable:
    """(requester, target, id) -> the relayed request waiting for the target's answer."""

    def __dealloc__(self):
        for item in self._entries:
            Py_DECREF(<object>item.second.requester)
            Py_DECREF(<object>item.second.target)
        self._entries.clear()
        self._per_target.clear()
        self._per_requester.clear()

    def __len__(self):
        return self._entries.size()

    cdef bint add(self, Str requester, Str target, Str msg_id,
                  object requester_conn, object target_conn, double deadline) except -1:
        """Register a relayed request; False if the same key is already pending."""
        make_key(&self._key, requester, target, msg_id)
        if self._entries.count(self._key):
            return False
        self._seq += 1
        cdef Pending entry
        entry.requester = <PyObject*>requester_conn
        entry.target = <PyObject*>target_conn
        entry.seq = self._seq
        Py_INCREF(requester_conn)
        Py_INCREF(target_conn)
        self._entries[self._key] = entry
        self._per_target[entry.target] += 1
        self._per_requester[entry.requester] += 1
        if self._stale > STALE_MIN and self._stale * 2 > <Py_ssize_t>self._deadlines.size():
            self._compact()
        cdef Deadline d
        d.at = deadline
        d.seq = self._seq
        d.key = self._key
        self._deadlines.push_back(d)
        return True

    cdef object pop(self, Str requester, Str target, Str msg_id):
        """Resolve a pending request: returns its requester, or None if nothing waits."""
        make_key(&self._key, requester, target, msg_id)
        it = self._entries.find(self._key)
        if it == self._entries.end():
            return None
        cdef Pending entry = deref(it).second
        self._entries.erase(it)
        requester_conn = <object>entry.requester
        self._release(&entry)
        self._stale += 1
        return requester_conn

    cdef void _release(self, Pending* entry) noexcept:
        """Drop the table's references of an entry already erased."""
        # Cython compiles `deref(it).second -= 1` to a change of a copy: write through operator[].
        cdef Py_ssize_t left = deref(self._per_target.find(entry.target)).second - 1
        if left == 0:
            self._per_target.erase(entry.target)
        else:
            self._per_target[entry.target] = left
        left = deref(self._per_requester.find(entry.requester)).second - 1
        if left == 0:
            self._per_requester.erase(entry.requester)
        else:
            self._per_requester[entry.requester] = left
        Py_DECREF(<object>entry.requester)
        Py_DECREF(<object>entry.target)

    cdef list expire(self, double now):
        """Pop the requests whose deadline passed: [(requester, target, id bytes)]."""
        cdef list out = []
        while not self._deadlines.empty() and self._deadlines.front().at <= now:
            d = self._deadlines.front()
            it = self._entries.find(d.key)
            if it != self._entries.end() and deref(it).second.seq == d.seq:
                entry = deref(it).second
                self._entries.erase(it)
                out.append((<object>entry.requester, <object>entry.target, id_of_key(d.key)))
                self._release(&entry)
            else:
                self._stale -= 1
            self._deadlines.pop_front()
        return out

    cdef list drop_target(self, object target_conn):
        """Pop every request waiting on ``target_conn``: [(requester, id bytes)]."""
        cdef list out = []
        if not self._per_target.count(<PyObject*>target_conn):
            return out
        it = self._entries.begin()
        while it != self._entries.end():
            if deref(it).second.target == <PyObject*>target_conn:
                entry = deref(it).second
                out.append((<object>entry.requester, id_of_key(deref(it).first)))
                it = self._entries.erase(it)
                self._release(&entry)
                self._stale += 1
            else:
                inc(it)
        return out

    cdef Py_ssize_t pending_from(self, object requester_conn):
        """How many requests from ``requester_conn`` wait for an answer."""
        it = self._per_requester.find(<PyObject*>requester_conn)
        if it == self._per_requester.end():
            return 0
        return deref(it).second

    cdef void _compact(self):
        """Drop the deadlines of answered requests, so they do not pile up for request_timeout."""
        cdef deque[Deadline] live
        for d in self._deadlines:
            it = self._entries.find(d.key)
            if it != self._entries.end() and deref(it).second.seq == d.seq:
                live.push_back(d)
        self._deadlines.swap(live)
        self._stale = 0

    cdef double next_deadline(self):
        """The earliest deadline still queued, or -1 (stale entries are skipped lazily)."""
        if self._deadlines.empty():
            return -1
        return self._deadlines.front().at


cdef class RemoteWorker:
    """Another worker as a destination: its NATS subject and the batch of records bound for it."""

    def __init__(self, str wid, bytes subject):
        self.wid = wid
        self.subject = subject
        self.outbox = FrameBuffer()
        self.dirty = False
        self.reachable = True

    def __repr__(self):
        return f"RemoteWorker({self.wid!r})"


cdef class RemoteClient:
    """A client id bound on another worker, as the presence map last heard of it."""

    def __init__(self, str client_id, RemoteWorker worker, long long stamp):
        self.client_id = client_id
        self.client_id_b = client_id.encode()
        self.worker = worker
        self.stamp = stamp

    def __repr__(self):
        return f"RemoteClient({self.client_id!r} on {self.worker.wid!r})"
