# Login: the built-in auth@v1/login (and a handshake token's id, bound at the upgrade) through the
# authenticator, and the duplicate-login rule binding an id to one connection. Included into _gateway.pyx.

import inspect

from wsa_fast._codec cimport FAIL, ADDR_ID, SUCCESS, WsaMsg, loads, str_of
from wsa_fast._policy cimport Policy
from wsa_fast._routing cimport ClientTable

from wsa_fast.grammar import is_client_id as py_is_client_id
from wsa_fast.policy import parse_policy


cdef class Login(Dispatch):
    """Which connection holds which client id, and who each client is for the policy."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        Dispatch.__init__(self, settings, app, authenticator, loop, metrics)
        self.clients = ClientTable()
        self.authenticator = authenticator
        self.policy = Policy(parse_policy(settings.policy) if settings.policy is not None else None)
        self.reject_duplicates = settings.duplicate_login == "reject"

    cdef int login(self, Connection conn, WsaMsg* m) except -1:
        if conn.client_id_b is not None or conn.login_pending:
            return self.fail(conn, m, ALREADY_AUTHENTICATED)
        requested = text(m.from_) if m.from_kind == ADDR_ID else ""
        msg_id = text(m.id)
        try:
            params = loads(m.params) if m.has_params else None
            outcome = self.authenticator.login(requested, params)
        except Exception as exc:
            return self.finish_login(conn, msg_id, requested, exc)
        if inspect.isawaitable(outcome):
            conn.login_pending = True
            self.spawn(self.login_later(conn, msg_id, requested, outcome))
            return 0
        return self.finish_login(conn, msg_id, requested, outcome)

    async def login_later(self, Connection conn, str msg_id, str requested, awaitable):
        try:
            outcome = await awaitable
        except Exception as exc:
            outcome = exc
        conn.login_pending = False
        self.finish_login(conn, msg_id, requested, outcome)
        conn.flush()

    def finish_login(self, Connection conn, str msg_id, str requested, outcome):
        cdef bytes id_b = msg_id.encode()
        cdef bytes to_b = requested.encode()
        if conn.closed:
            return 0
        if isinstance(outcome, BaseException):
            self.counts[<int>LOGINS_FAIL] += 1
            return self.reply_error(conn, str_of(id_b), str_of(to_b), outcome, "the authenticator")
        if not isinstance(outcome, str) or not py_is_client_id(outcome):
            self.counts[<int>LOGINS_FAIL] += 1
            return self.reply(conn, str_of(id_b), str_of(to_b), FAIL, PERMISSION_DENIED, None, NULL)
        client_id = str(outcome)        # an auth.Identity carries roles; the tables keep a plain str
        refused = self.claim(conn, client_id)
        if refused is not None:
            self.counts[<int>LOGINS_FAIL] += 1
            return self.reply(conn, str_of(id_b), str_of(to_b), FAIL, refused, None, NULL)
        conn.principals = self.policy.principals_of(client_id, getattr(outcome, "roles", ()))
        return self.reply(conn, str_of(id_b), str_of(conn.client_id_b), SUCCESS, None, client_id, NULL)

    def claim(self, Connection conn, str client_id):
        """Bind ``client_id`` to ``conn`` under the duplicate-login policy: None once bound, else
        the code the login fails with (CONFLICT, or INTERNAL_ERROR if the app's on_join hook raised)."""
        cdef bytes id_b = client_id.encode()
        cdef Connection holder = self.clients.get(str_of(id_b))
        if self.reject_duplicates and self.router.locate(str_of(id_b)) is not None:
            return CONFLICT
        if holder is not None and holder is not conn and not holder.closed:
            if self.reject_duplicates:
                return CONFLICT
            log.info("client %s logged in again from %s; closing the older connection", client_id, conn.address)
            holder.close(CLOSE_REPLACED, "replaced")
        if not conn.bind(client_id):
            return INTERNAL_ERROR
        return None
