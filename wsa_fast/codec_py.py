"""The pure-Python reference codec: the oracle for the compiled ``wsa_fast._codec``.

Slow on purpose and written for reading: every rule of profile sections 2-3 is a line
here. The property tests feed the same bytes to both codecs and require the same verdict.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .grammar import MAX_NESTING, is_client_id, is_code, is_message_id, is_method
from .message import COMPACT, VERBOSE, DecodeError, Message

__all__ = [
    "VERBOSE",
    "COMPACT",
    "Message",
    "DecodeError",
    "decode",
    "encode",
    "readable_id",
]

# Deepest whole-document nesting: the envelope is level 1, its payload 2, params 3.
MAX_DEPTH = MAX_NESTING
# An id is echoed back in an error response only if it is short printable ASCII.
MAX_READABLE_ID = 64

_ENVELOPE_KEYS = {
    "from": ("from", VERBOSE),
    "to": ("to", VERBOSE),
    "type": ("type", VERBOSE),
    "id": ("id", VERBOSE),
    "payload": ("payload", VERBOSE),
    "f": ("from", COMPACT),
    "t": ("to", COMPACT),
    "y": ("type", COMPACT),
    "i": ("id", COMPACT),
    "p": ("payload", COMPACT),
    "P": ("payload", COMPACT),
}
# Payload keys per form; compact "c" is a receipt on success and a code on failure.
_PAYLOAD_KEYS = (
    {"method": "method", "params": "params", "result": "result", "receipt": "receipt", "code": "code", "data": "data"},
    {"m": "method", "p": "params", "r": "result", "c": "c", "d": "data"},
)
_TYPES = (
    {"request": "request", "response": "response", "event": "event"},
    {"q": "request", "r": "response", "e": "event"},
)
_RESULTS = ({"success": "success", "fail": "fail"}, {"s": "success", "f": "fail"})
_SERVER = ("server", "s")
_BROADCAST = ("client", "c")
_TYPE_OUT = (
    {"request": "request", "response": "response", "event": "event"},
    {"request": "q", "response": "r", "event": "e"},
)
_RESULT_OUT = ({"success": "success", "fail": "fail"}, {"success": "s", "fail": "f"})
_KEYS_OUT = (
    ("from", "to", "type", "id", "payload", "method", "params", "result", "receipt", "code", "data"),
    ("f", "t", "y", "i", "p", "m", "p", "r", "c", "c", "d"),
)


class _Obj(dict):
    """A JSON object that remembers its pairs in order, duplicates included."""

    __slots__ = ("pairs",)
    pairs: list[tuple[str, Any]]


def _object_hook(pairs: list) -> _Obj:
    obj = _Obj(pairs)
    obj.pairs = pairs
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _depth(text: str) -> int:
    """Deepest bracket nesting outside strings; checked before json.loads can recurse."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


# A \u escape of a surrogate (or a raw one in str input): the cue to look for unpaired ones.
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """A string, key or value, holding a surrogate: json.loads pairs the valid ones, so it is unpaired."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, _Obj):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.pairs)
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


class _LongInt:
    """An integer literal longer than Python converts (sys.get_int_max_str_digits()).

    The document is still JSON: in a field it is just a value of the wrong type; only
    handing it over inside params or data is impossible.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _LongInt(text)


def _plain(value: Any) -> Any:
    """Turn _Obj values back into plain dicts for the caller."""
    if isinstance(value, _LongInt):
        raise _Invalid("an integer too long to hold as a Python int")
    if isinstance(value, _Obj):
        # Every pair, a duplicate key's overwritten value included; the last one wins.
        return dict([(k, _plain(v)) for k, v in value.pairs])
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _first_string(pairs: list, names: tuple[str, ...]) -> str | None:
    for key, value in pairs:
        if key in names:
            return value if isinstance(value, str) else None
    return None


def readable_id(value: str | None) -> str | None:
    """The id an error response may echo: 1-64 printable ASCII characters."""
    if value is None or not 0 < len(value) <= MAX_READABLE_ID:
        return None
    return value if all(" " <= ch <= "~" for ch in value) else None


def decode(data: bytes | str) -> Message:
    """Decode one WSA message in either form, or raise DecodeError."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("not UTF-8") from None
    else:
        text = data
    if _depth(text) > MAX_DEPTH:
        raise DecodeError("nested too deeply")
    try:
        doc = json.loads(text, object_pairs_hook=_object_hook, parse_constant=_reject_constant, parse_int=_parse_int)
    except (ValueError, RecursionError):
        raise DecodeError("not JSON") from None
    # Strings must be Unicode text, which an unpaired surrogate escape ("\ud800") is not.
    if _SURROGATE_HINT.search(text) and _has_lone_surrogate(doc):
        raise DecodeError("not JSON: unpaired surrogate")
    if not isinstance(doc, _Obj):
        raise DecodeError("not a JSON object")

    raw_type = _first_string(doc.pairs, ("type", "y"))
    context = {
        "id": readable_id(_first_string(doc.pairs, ("id", "i"))),
        "type": _TYPES[VERBOSE].get(raw_type) or _TYPES[COMPACT].get(raw_type) if raw_type else None,
        "from_": _first_string(doc.pairs, ("from", "f")),
    }
    try:
        return _decode_envelope(doc)
    except _Invalid as exc:
        raise DecodeError(str(exc), **context) from None


class _Invalid(Exception):
    pass


def _decode_envelope(doc: _Obj) -> Message:
    form = None
    fields: dict[str, Any] = {}
    for key, value in doc.pairs:
        spec = _ENVELOPE_KEYS.get(key)
        if spec is None:
            raise _Invalid(f"unknown key {key!r}")
        name, key_form = spec
        if form is None:
            form = key_form
        elif key_form != form:
            raise _Invalid("verbose and compact keys mixed")
        if name in fields:
            raise _Invalid(f"duplicate key {key!r}")
        fields[name] = value
    for name in ("from", "to", "type", "id", "payload"):
        if name not in fields:
            raise _Invalid(f"missing {name}")
    assert form is not None  # set by the first key, and there are five

    from_, to, type_, id_, payload = (fields[n] for n in ("from", "to", "type", "id", "payload"))
    if not isinstance(from_, str):
        raise _Invalid("from must be a string")
    if from_ == _SERVER[form]:
        from_ = "server"
    elif from_ != "" and not is_client_id(from_):
        raise _Invalid("from is not a client id")
    if not isinstance(to, str):
        raise _Invalid("to must be a string")
    if to == _SERVER[form]:
        to = "server"
    elif to == _BROADCAST[form]:
        to = "client"
    elif not is_client_id(to) and not (to == "" and from_ == "server"):
        # Only the server writes to "": it answers anonymous connections there (profile section 4).
        raise _Invalid("to is not a client id")
    if not isinstance(type_, str) or type_ not in _TYPES[form]:
        raise _Invalid("type must be request, response or event")
    type_ = _TYPES[form][type_]
    if not isinstance(id_, str) or not is_message_id(id_):
        raise _Invalid("id is neither ISO 8601 nor [a-z0-9]{5}")
    if not isinstance(payload, _Obj):
        raise _Invalid("payload must be an object")

    msg = Message(type_, from_, to, id_, form=form)
    _decode_payload(msg, payload, form)
    return msg


def _decode_payload(msg: Message, payload: _Obj, form: int) -> None:
    names = _PAYLOAD_KEYS[form]
    fields: dict[str, Any] = {}
    for key, value in payload.pairs:
        name = names.get(key)
        if name is None:
            raise _Invalid(f"unknown payload key {key!r}")
        if name in fields:
            raise _Invalid(f"duplicate payload key {key!r}")
        fields[name] = value

    if msg.type != "response":
        if fields.keys() - {"method", "params"}:
            raise _Invalid("request and event payloads hold only method and params")
        method = fields.get("method")
        if not isinstance(method, str) or not is_method(method):
            raise _Invalid("method must be service@vN/endpoint")
        msg.method = method
        if "params" in fields:
            if not isinstance(fields["params"], (dict, list)):
                raise _Invalid("params must be an object or an array")
            msg.params = _plain(fields["params"])
        return

    if fields.keys() - {"result", "receipt", "code", "c", "data"}:
        raise _Invalid("response payloads hold result, receipt or code, and data")
    result = fields.get("result")
    if not isinstance(result, str) or result not in _RESULTS[form]:
        raise _Invalid("result must be success or fail")
    msg.result = _RESULTS[form][result]
    if "c" in fields:
        fields["receipt" if msg.result == "success" else "code"] = fields.pop("c")
    if msg.result == "success":
        if "code" in fields:
            raise _Invalid("a success carries no code")
        if "receipt" in fields:
            receipt = fields["receipt"]
            if receipt is not None and not isinstance(receipt, str):
                raise _Invalid("receipt must be a string or null")
            msg.receipt = receipt
            msg.has_receipt = True
    else:
        if "receipt" in fields:
            raise _Invalid("a failure carries no receipt")
        code = fields.get("code")
        if not isinstance(code, str) or not is_code(code):
            raise _Invalid("a failure needs a code like PERMISSION_DENIED")
        msg.code = code
    if "data" in fields:
        msg.data = _plain(fields["data"])
        msg.has_data = True


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(msg: Message, form: int = VERBOSE) -> bytes:
    """Encode a message into the given form, keys in canonical order."""
    k = _KEYS_OUT[form]
    from_ = _SERVER[form] if msg.from_ == "server" else msg.from_
    to = _SERVER[form] if msg.to == "server" else _BROADCAST[form] if msg.to == "client" else msg.to
    parts = [
        f'{{"{k[0]}":{_json(from_)},"{k[1]}":{_json(to)},"{k[2]}":"{_TYPE_OUT[form][msg.type]}",'
        f'"{k[3]}":{_json(msg.id)},"{k[4]}":{{'
    ]
    if msg.type == "response":
        assert msg.result is not None, "a response has a result"
        success = msg.result == "success"
        parts.append(f'"{k[7]}":"{_RESULT_OUT[form][msg.result]}"')
        if success and msg.has_receipt:
            parts.append(f',"{k[8]}":{_json(msg.receipt)}')
        elif not success:
            parts.append(f',"{k[9]}":{_json(msg.code)}')
        if msg.has_data:
            parts.append(f',"{k[10]}":{_json(msg.data)}')
    else:
        parts.append(f'"{k[5]}":{_json(msg.method)}')
        if msg.params is not None:
            parts.append(f',"{k[6]}":{_json(msg.params)}')
    parts.append("}}")
    return "".join(parts).encode()
