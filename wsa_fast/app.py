"""The application API: handler registration and the server's own messages to clients."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from ._context import Context
from .errors import WSAError
from .grammar import is_method
from .message import Message
from .methods import BUILTIN_METHODS

__all__ = ["App", "Context", "Handler", "Policy"]

log = logging.getLogger("wsa_fast.app")

Handler = Callable[["Context", Any], Any]
# (sender id, target id or "client", "request"|"event", method) -> allowed?
Policy = Callable[[str, str, str, str], bool]


class App:
    """Handlers for methods called on the server, and the server's side of the conversation.

    A request handler returns None (success), a str (success with that receipt) or any
    other JSON value (success with ``data``), or raises ``WSAError(code)`` (fail). Event
    handlers answer only when they raise. Handlers may be sync or async.
    """

    def __init__(self, *, authenticator: Any = None, authorize: Policy | None = None) -> None:
        self.request_handlers: dict[str, tuple[Handler, bool]] = {}
        self.event_handlers: dict[str, tuple[Handler, bool]] = {}
        self.authenticator = authenticator  # a wsa_fast.auth.Authenticator; None: from settings
        self.authorize = authorize  # called for each client-to-client message when set
        self._joined: list[Callable[[str], Any]] = []
        self._left: list[Callable[[str], Any]] = []
        self._gateway: Any = None

    # ---- registration ----

    def request(self, method: str) -> Callable[[Handler], Handler]:
        """Decorator: handle requests for ``method`` (``service@vN/endpoint``)."""
        return self._register(self.request_handlers, method)

    def event(self, method: str) -> Callable[[Handler], Handler]:
        """Decorator: handle events for ``method``."""
        return self._register(self.event_handlers, method)

    def on_join(self, fn: Callable[[str], Any]) -> Callable[[str], Any]:
        """Decorator: called with the client id each time a client logs in; if it raises, the
        login fails with INTERNAL_ERROR and the id stays unbound."""
        self._joined.append(fn)
        return fn

    def on_leave(self, fn: Callable[[str], Any]) -> Callable[[str], Any]:
        """Decorator: called with the client id each time a logged-in client disconnects."""
        self._left.append(fn)
        return fn

    def _register(self, table: dict, method: str) -> Callable[[Handler], Handler]:
        if not is_method(method):
            raise ValueError(f"{method!r} is not a method name of the form service@vN/endpoint")
        if method in BUILTIN_METHODS:
            raise ValueError(f"{method} is built in and cannot be replaced")
        if method in table:
            raise ValueError(f"a handler for {method} is already registered")

        def decorate(fn: Handler) -> Handler:
            table[method] = (fn, inspect.iscoroutinefunction(fn))
            return fn

        return decorate

    # ---- called by the gateway ----

    def attach(self, gateway: Any) -> None:
        self._gateway = gateway

    def client_joined(self, client_id: str) -> None:
        for fn in self._joined:
            fn(client_id)

    def client_left(self, client_id: str) -> None:
        # Nobody waits on a departure: a hook that raises is logged, and the others still run.
        for fn in self._left:
            try:
                fn(client_id)
            except Exception:
                log.exception("the on_leave hook failed for %s", client_id)

    # ---- the server speaking to clients ----

    @property
    def gateway(self) -> Any:
        if self._gateway is None:
            raise RuntimeError("the app is not being served")
        return self._gateway

    @property
    def clients(self) -> list[str]:
        """Ids of the clients logged in to this worker."""
        return self.gateway.client_ids()

    async def send_request(
        self, client_id: str, method: str, params: Any = None, *, timeout: float | None = None
    ) -> Message:
        """Ask a client and wait for its answer (default timeout: ``request_timeout``).

        Returns the success response; raises WSAError with the client's code on fail,
        ``NOT_FOUND`` if it is not connected, ``TIMEOUT`` or ``GONE``.
        """
        response: Message = await self.gateway.request(client_id, method, params, timeout)
        if response.result == "fail":
            raise WSAError(response.code or "INTERNAL_ERROR", f"{client_id} answered fail")
        return response

    def send_event(self, client_id: str, method: str, params: Any = None) -> None:
        """Send an event to one client; WSAError ``NOT_FOUND`` if it is not connected."""
        self.gateway.send_event(client_id, method, params)

    def broadcast(self, method: str, params: Any = None) -> int:
        """Send an event to every logged-in client (encoded once per form); returns the count."""
        return self.gateway.broadcast(method, params)
