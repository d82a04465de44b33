"""An asyncio WSA client on picows.

Runs on any asyncio loop (uvloop included, not required)::

    async with Client.connect("ws://127.0.0.1:8765", form="compact") as c:
        await c.login("alice")
        reply = await c.request("chat@v1/send", {"text": "hi"}, to="bob")

``Client.connect(...)`` may be awaited (``c = await Client.connect(...)``, then
``await c.close()``) or used directly as an async context manager; a connected
``Client`` is itself an async context manager that closes on exit.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, ws_connect

from ._codec import Outcome, decode, encode, fail_code_of, outcome_kind
from .errors import WSAError
from .grammar import is_client_id, is_method
from .ids import id_factory
from .message import COMPACT, FORMS, SUBPROTOCOLS, VERBOSE, DecodeError, Message
from .methods import ERROR_EVENT, LOGIN, PING

__all__ = ["Client"]

log = logging.getLogger("wsa_fast.client")

_FORM_OF_PROTOCOL = {name: form for form, name in SUBPROTOCOLS.items()}
NEGOTIATIONS = ("subprotocol", "query", "none")

# How long close() waits for the server's CLOSE before dropping the socket.
CLOSE_TIMEOUT = 5.0

Handler = Callable[[Message], Any]


class _Listener(WSListener):
    """picows callbacks for one connection: reassembles messages and hands them to the Client."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.fragments: bytearray | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.client._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            if frame.fin:
                self.fragments = None
                self.client._on_data(frame.get_payload_as_bytes())
            else:
                self.fragments = bytearray(frame.get_payload_as_memoryview())
                self._check_size(transport)
        elif kind == WSMsgType.CONTINUATION:
            if self.fragments is None:
                self._fail(transport, WSCloseCode.PROTOCOL_ERROR, "continuation without a first fragment")
                return
            self.fragments += frame.get_payload_as_memoryview()
            if not self._check_size(transport):
                return
            if frame.fin:
                data, self.fragments = bytes(self.fragments), None
                self.client._on_data(data)
        elif kind == WSMsgType.CLOSE:
            code = _close_code_int(frame.get_close_code()) if frame.payload_size >= 2 else None
            self.client._close_code = code
            self.client._close_reason = frame.get_close_reason() if frame.payload_size > 2 else ""
            if not transport.is_close_frame_sent:
                # Echo the peer's code (RFC 6455 5.5.1), or 1000 when it sent none.
                transport.send_close(WSCloseCode.OK if code is None else _as_close_code(code))
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.client._disconnected()

    def _check_size(self, transport: WSTransport) -> bool:
        if self.fragments is not None and len(self.fragments) > self.client.max_message_size:
            self.fragments = None
            self._fail(transport, WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            return False
        return True

    def _fail(self, transport: WSTransport, code: Any, reason: str) -> None:
        log.warning("closing the connection: %s", reason)
        transport.send_close(code, reason.encode())
        transport.disconnect()


def _close_code_int(code: Any) -> int:
    return int(code.value) if hasattr(code, "value") else int(code)


def _as_close_code(code: int) -> WSCloseCode:
    """Any close code for picows's send_close: it takes an int (a C enum), its stub names only its enum's."""
    return cast(WSCloseCode, code)


class _Connecting:
    """What ``Client.connect`` returns: awaitable, and an async context manager that closes on exit."""

    def __init__(self, opening: Awaitable[Client]) -> None:
        self._opening = opening
        self._client: Client | None = None

    def __await__(self):
        return self._opening.__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._opening
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()


class Client:
    """One WSA connection: requests, events, handlers for what the server or other clients send."""

    def __init__(
        self,
        *,
        form: int,
        request_timeout: float,
        id_style: str,
        client_id: str | None,
        max_message_size: int,
        max_queued_events: int,
    ) -> None:
        self.form = form  # the connection's form: what the server writes to us
        self.client_id = client_id  # the bound id ("from" of everything sent), None if unknown
        self.request_timeout = request_timeout
        self.max_message_size = max_message_size
        self.max_queued_events = max_queued_events
        self.closed = False
        self.stats = {"dropped_responses": 0, "bad_messages": 0, "dropped_events": 0, "handler_errors": 0}
        self._new_id = id_factory(id_style)
        self._transport: WSTransport | None = None
        self._close_code: int | None = None
        self._close_reason: str | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._request_handlers: dict[str, Handler] = {}
        self._event_handlers: dict[str, Handler] = {}
        self._events: deque[Message] = deque()
        self._event_waiters: list[tuple[str | None, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.get_running_loop()  # made by Client.connect, on the loop it runs on
        self._gone = asyncio.Event()
        self._negotiate = "none"
        self._connect_error: Exception | None = None

    # ---- connecting and closing ----

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        form: str = "verbose",
        negotiate: str = "subprotocol",
        token: str | None = None,
        request_timeout: float = 30.0,
        id_style: str = "iso8601",
        client_id: str | None = None,
        max_message_size: int = 16 * 1024 * 1024,
        max_queued_events: int = 10_000,
        handshake_timeout: float = 5.0,
        extra_headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> _Connecting:
        """Open a connection; await the result, or use it as ``async with``.

        ``form``: "verbose" or "compact", asked for by ``negotiate``: "subprotocol"
        (``Sec-WebSocket-Protocol``), "query" (``?format=``) or "none" (verbose only).
        ``token`` is sent as ``Authorization: Bearer``; the id it binds cannot be read
        from the server, so pass it as ``client_id`` to send anything but ping.
        A refused upgrade raises ``picows.WSHandshakeError`` (e.g. HTTP 401 for a bad token).
        ``ssl_context``: how a ``wss://`` server is verified (default: the system's CAs).
        """
        if form not in FORMS:
            raise ValueError(f"form must be 'verbose' or 'compact', not {form!r}")
        if negotiate not in NEGOTIATIONS:
            raise ValueError(f"negotiate must be one of {', '.join(NEGOTIATIONS)}, not {negotiate!r}")
        if negotiate == "none" and form != "verbose":
            raise ValueError("without negotiation the connection's form is verbose")
        if client_id is not None and not is_client_id(client_id):
            raise ValueError(f"{client_id!r} is not a client id")
        id_factory(id_style)  # reject an unknown style before connecting
        return _Connecting(
            cls._open(
                url,
                FORMS[form],
                negotiate,
                token,
                request_timeout,
                id_style,
                client_id,
                max_message_size,
                max_queued_events,
                handshake_timeout,
                extra_headers,
                ssl_context,
            )
        )

    @classmethod
    async def _open(
        cls,
        url: str,
        form: int,
        negotiate: str,
        token: str | None,
        request_timeout: float,
        id_style: str,
        client_id: str | None,
        max_message_size: int,
        max_queued_events: int,
        handshake_timeout: float,
        extra_headers: dict[str, str] | None,
        ssl_context: ssl.SSLContext | None,
    ) -> Client:
        headers = dict(extra_headers or {})
        if negotiate == "subprotocol":
            headers["Sec-WebSocket-Protocol"] = SUBPROTOCOLS[form]
        elif negotiate == "query":
            url = _with_query(url, "format", "compact" if form == COMPACT else "verbose")
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        client = cls(
            form=form if negotiate == "query" else VERBOSE,
            request_timeout=request_timeout,
            id_style=id_style,
            client_id=client_id,
            max_message_size=max_message_size,
            max_queued_events=max_queued_events,
        )
        client._negotiate = negotiate
        await ws_connect(
            lambda: _Listener(client),
            url,
            extra_headers=headers or None,
            max_frame_size=max_message_size,
            websocket_handshake_timeout=handshake_timeout,
            logger_name="wsa_fast.client",
            ssl_context=ssl_context,
        )
        if client._connect_error is not None:
            await client.close()
            raise client._connect_error
        return client

    def _connected(self, transport: WSTransport) -> None:
        self._transport = transport
        if self._negotiate == "subprotocol":
            echoed = transport.response.headers.get("Sec-WebSocket-Protocol") if transport.response else None
            if echoed:
                if echoed in _FORM_OF_PROTOCOL:
                    self.form = _FORM_OF_PROTOCOL[echoed]
                else:
                    self._connect_error = ConnectionError(f"the server chose an unknown subprotocol {echoed!r}")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (waits briefly for the server's CLOSE); pending requests fail GONE."""
        if self._transport is None:
            return
        if not self.closed and not self._transport.is_close_frame_sent:
            self._transport.send_close(_as_close_code(code), reason.encode())
        if not self.closed:
            try:
                await asyncio.wait_for(self._gone.wait(), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                self._transport.disconnect(False)
                await self._gone.wait()

    async def wait_closed(self) -> None:
        """Return once the connection is gone (for whatever reason)."""
        await self._gone.wait()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (4001 replaced, 1008, 1001...), None if it sent none."""
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    @property
    def dropped_responses(self) -> int:
        """Responses that answered nothing pending here (late, unknown, duplicate)."""
        return self.stats["dropped_responses"]

    def _disconnected(self) -> None:
        if self.closed:
            return
        self.closed = True
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(_error("GONE", "the connection closed"))
        waiters, self._event_waiters = self._event_waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_exception(_error("GONE", "the connection closed"))
        self._gone.set()

    # ---- sending ----

    def _send(self, msg: Message) -> None:
        if self.closed or self._transport is None or self._transport.is_close_frame_sent:
            raise _error("GONE", "the connection is closed")
        self._transport.send(WSMsgType.TEXT, encode(msg, self.form))

    def send_raw(self, data: bytes | str) -> None:
        """Send one WebSocket text message as is, unchecked (for tests and tools)."""
        if self.closed or self._transport is None or self._transport.is_close_frame_sent:
            raise _error("GONE", "the connection is closed")
        self._transport.send(WSMsgType.TEXT, data.encode() if isinstance(data, str) else data)

    async def request(
        self, method: str, params: Any = None, *, to: str = "server", timeout: float | None = None
    ) -> Message:
        """Send a request and return the success response.

        Raises WSAError with the response's code for fail (the error's ``.response`` is the
        Message), ``TIMEOUT`` when nothing arrives within ``timeout`` (default
        ``request_timeout``; ``math.inf`` waits forever) and ``GONE`` when the connection closes.
        """
        return await self._request(method, params, to, timeout, self.client_id or "")

    async def _request(self, method: str, params: Any, to: str, timeout: float | None, from_: str) -> Message:
        _check_outgoing(method, params, to)
        msg_id = self._new_id()
        while msg_id in self._pending:  # only possible with the short style after 36**5 ids
            msg_id = self._new_id()
        future = self._loop.create_future()
        self._send(Message("request", from_, to, msg_id, method=method, params=params))
        self._pending[msg_id] = future
        if timeout is None:
            timeout = self.request_timeout
        try:
            if math.isinf(timeout):
                return await future
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise _error("TIMEOUT", f"no response to {method} ({msg_id}) within {timeout:g}s") from None
        finally:
            if self._pending.get(msg_id) is future:
                del self._pending[msg_id]

    async def login(self, client_id: str = "", params: Any = None) -> str:
        """``auth@v1/login`` as ``client_id`` ("" takes the id the credentials name); returns the bound id."""
        if client_id and not is_client_id(client_id):
            raise ValueError(f"{client_id!r} is not a client id")
        response = await self._request(LOGIN, params, "server", None, client_id)
        bound = response.receipt
        if not isinstance(bound, str) or not is_client_id(bound):
            raise _error("INVALID_MESSAGE", f"login succeeded without a client id receipt: {response!r}")
        self.client_id = bound
        return bound

    async def ping(self, timeout: float | None = None) -> None:
        """``wsa@v1/ping`` the server (allowed before login)."""
        await self.request(PING, timeout=timeout)

    async def send_event(self, method: str, params: Any = None, *, to: str = "server") -> None:
        """Send an event; ``to="client"`` broadcasts it to every other logged-in client."""
        _check_outgoing(method, params, to)
        self._send(Message("event", self.client_id or "", to, self._new_id(), method=method, params=params))

    # ---- receiving ----

    def on_request(self, method: str) -> Callable[[Handler], Handler]:
        """Decorator: answer requests for ``method``.

        The handler gets the request Message (sync or async) and returns None (success),
        a str (success with that receipt) or another JSON value (success with data), or
        raises WSAError(code) (fail with code; other exceptions: INTERNAL_ERROR).
        """
        return self._register(self._request_handlers, method)

    def on_event(self, method: str) -> Callable[[Handler], Handler]:
        """Decorator: handle events for ``method`` (sync or async); they are then not queued."""
        return self._register(self._event_handlers, method)

    @staticmethod
    def _register(table: dict[str, Handler], method: str) -> Callable[[Handler], Handler]:
        if not is_method(method):
            raise ValueError(f"{method!r} is not a method name of the form service@vN/endpoint")

        def decorate(fn: Handler) -> Handler:
            table[method] = fn
            return fn

        return decorate

    async def next_event(self, method: str | None = None, timeout: float = 5.0) -> Message:
        """The oldest queued event (for ``method``, or any), waiting up to ``timeout``.

        Events with a handler are not queued; ``wsa@v1/error`` events are. Raises
        TimeoutError when none comes, WSAError("GONE") when the connection is closed.
        """
        for event in self._events:
            if method is None or event.method == method:
                self._events.remove(event)
                return event
        if self.closed:
            raise _error("GONE", "the connection is closed")
        future = self._loop.create_future()
        waiter = (method, future)
        self._event_waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            if waiter in self._event_waiters:
                self._event_waiters.remove(waiter)

    def _on_data(self, data: bytes) -> None:
        try:
            msg = decode(data)
        except DecodeError as exc:
            self.stats["bad_messages"] += 1
            log.warning("undecodable message from the server (%s): %.200r", exc.reason, data)
            return
        try:
            if msg.type == "response":
                self._on_response(msg)
            elif msg.type == "request":
                self._on_request(msg)
            else:
                self._on_event(msg)
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("failed to handle %r", msg)

    def _on_response(self, msg: Message) -> None:
        future = self._pending.pop(msg.id, None)
        if future is None or future.done():
            self.stats["dropped_responses"] += 1
            return
        if msg.result == "fail":
            assert msg.code is not None  # the decoder gives every fail its code
            future.set_exception(_error(msg.code, f"{msg.from_} answered fail {msg.code}", msg))
        else:
            future.set_result(msg)

    def _on_request(self, msg: Message) -> None:
        assert msg.method is not None  # the decoder gives every request its method
        handler = self._request_handlers.get(msg.method)
        if handler is None:
            self._reply(msg, WSAError("METHOD_NOT_FOUND"))
            return
        try:
            outcome = handler(msg)
        except Exception as exc:
            self._reply(msg, exc)
            return
        if inspect.isawaitable(outcome):
            self._spawn(self._reply_later(msg, outcome))
        else:
            self._reply(msg, outcome)

    async def _reply_later(self, msg: Message, awaitable: Awaitable[Any]) -> None:
        try:
            outcome = await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = exc
        self._reply(msg, outcome)

    def _reply(self, request: Message, outcome: Any) -> None:
        """Answer ``request`` with a handler's outcome, in the connection's form."""
        if self.closed:
            return
        response = Message("response", self.client_id or "", request.from_, request.id)
        kind = outcome_kind(outcome)  # the rule the gateway answers its handlers' outcomes by
        if kind == Outcome.OUTCOME_FAIL:
            if not isinstance(outcome, WSAError):
                self.stats["handler_errors"] += 1
                log.error("handler for %s failed", request.method, exc_info=outcome)
            response.result, response.code = "fail", fail_code_of(outcome)
        else:
            response.result = "success"
            if kind == Outcome.OUTCOME_RECEIPT:
                response.receipt, response.has_receipt = outcome, True
            elif kind == Outcome.OUTCOME_DATA:
                response.data, response.has_data = outcome, True
        try:
            self._send(response)
        except (TypeError, ValueError):
            log.error("handler for %s returned a value that is not JSON: %.200r", request.method, outcome)
            self.stats["handler_errors"] += 1
            self._send(
                Message(
                    "response", self.client_id or "", request.from_, request.id, result="fail", code="INTERNAL_ERROR"
                )
            )
        except WSAError:
            pass  # closed meanwhile: nobody to answer

    def _on_event(self, msg: Message) -> None:
        assert msg.method is not None  # the decoder gives every event its method
        handler = self._event_handlers.get(msg.method)
        if handler is not None:
            outcome = handler(msg)
            if inspect.isawaitable(outcome):
                self._spawn(self._run_event_handler(msg, outcome))
            return
        for waiter in self._event_waiters:
            wanted, future = waiter
            if (wanted is None or wanted == msg.method) and not future.done():
                self._event_waiters.remove(waiter)
                future.set_result(msg)
                return
        if msg.method == ERROR_EVENT:
            log.warning("server error event: %s", msg.params)
        if len(self._events) >= self.max_queued_events:
            self._events.popleft()
            self.stats["dropped_events"] += 1
        self._events.append(msg)

    async def _run_event_handler(self, msg: Message, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("event handler for %s failed", msg.method)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        form = "compact" if self.form == COMPACT else "verbose"
        return f"<Client {self.client_id or '(anonymous)'} {form} {state}>"


def _error(code: str, text: str, response: Message | None = None) -> WSAError:
    """A WSAError carrying ``.response``: the fail Message, or None when raised client-side."""
    error = WSAError(code, text)
    error.response = response
    return error


def _check_outgoing(method: str, params: Any, to: str) -> None:
    if not is_method(method):
        raise ValueError(f"{method!r} is not a method name of the form service@vN/endpoint")
    if params is not None and not isinstance(params, (dict, list)):
        raise TypeError(f"params must be a dict, a list or None, not {type(params).__name__}")
    if to not in ("server", "client") and not is_client_id(to):
        raise ValueError(f"to must be 'server', 'client' or a client id, not {to!r}")


def _with_query(url: str, key: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != key]
    query.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(query)))
