"""The decoded form of a WSA message and the decode error, shared by both codecs."""

from __future__ import annotations

from typing import Any

__all__ = ["VERBOSE", "COMPACT", "FORMS", "SUBPROTOCOLS", "Message", "DecodeError"]

VERBOSE = 0
COMPACT = 1
# The forms by name (``?format=``, ``Client.connect(form=...)``) and by WebSocket subprotocol
# (``Sec-WebSocket-Protocol``, profile section 1).
FORMS = {"verbose": VERBOSE, "compact": COMPACT}
SUBPROTOCOLS = {VERBOSE: "wsa.v1", COMPACT: "wsa.v1.compact"}


class Message:
    """One decoded WSA message, in verbose terms whatever its form.

    ``from_`` and ``to`` hold ``"server"``, ``"client"`` (broadcast) or a client id;
    ``params`` and ``data`` are Python values (``has_data`` tells a JSON null from none).
    """

    __slots__ = (
        "form",
        "type",
        "from_",
        "to",
        "id",
        "method",
        "params",
        "result",
        "receipt",
        "has_receipt",
        "code",
        "data",
        "has_data",
    )

    def __init__(
        self,
        type: str,
        from_: str,
        to: str,
        id: str,
        *,
        method: str | None = None,
        params: Any = None,
        result: str | None = None,
        receipt: str | None = None,
        has_receipt: bool = False,
        code: str | None = None,
        data: Any = None,
        has_data: bool = False,
        form: int = VERBOSE,
    ) -> None:
        self.form = form
        self.type = type
        self.from_ = from_
        self.to = to
        self.id = id
        self.method = method
        self.params = params
        self.result = result
        self.receipt = receipt
        self.has_receipt = has_receipt or receipt is not None
        self.code = code
        self.data = data
        self.has_data = has_data or data is not None

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._fields() == other._fields()

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__ if getattr(self, n) not in (None, False))
        return f"Message({shown})"


class DecodeError(ValueError):
    """A message that breaks the profile. ``id`` is set when the sender can be answered."""

    code = "INVALID_MESSAGE"

    def __init__(self, reason: str, id: str | None = None, type: str | None = None, from_: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.id = id
        self.type = type
        self.from_ = from_
