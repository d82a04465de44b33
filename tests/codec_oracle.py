"""The pure-Python codec as the oracle of the compiled one: how two outcomes are compared.

Shared by the property tests (tests/test_codec_properties.py), the codec fuzzer
(tests/fuzz/codec.py) and the replay of its corpus (tests/test_fuzz_corpus.py).
"""

from __future__ import annotations

import json
from typing import Any

from wsa_fast import _codec as compiled
from wsa_fast import codec_py as pure
from wsa_fast.message import COMPACT, VERBOSE, DecodeError, Message

FORMS = (VERBOSE, COMPACT)


def same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values that tells 1, 1.0 and True apart, and -0.0 from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return a == b


def same_message(a: Message, b: Message) -> bool:
    scalars = [n for n in Message.__slots__ if n not in ("params", "data")]
    return (
        all(getattr(a, n) == getattr(b, n) for n in scalars)
        and same_json(a.params, b.params)
        and same_json(a.data, b.data)
    )


def outcome(decode, raw: bytes):
    """("ok", Message) or ("error", id, type, from_); any other exception propagates."""
    try:
        return ("ok", decode(raw))
    except DecodeError as exc:
        return ("error", exc.id, exc.type, exc.from_)


def assert_agree(raw: bytes):
    """Both codecs give the same verdict on ``raw``; returns it."""
    p = outcome(pure.decode, raw)
    c = outcome(compiled.decode, raw)
    if p[0] == "ok" and c[0] == "ok":
        assert same_message(p[1], c[1]), f"{raw!r}\npure:     {p[1]!r}\ncompiled: {c[1]!r}"
    else:
        assert p == c, f"{raw!r}\npure:     {p!r}\ncompiled: {c!r}"
    return p


def with_form(msg: Message, form: int) -> Message:
    copy = Message(msg.type, msg.from_, msg.to, msg.id)
    for name in Message.__slots__:
        setattr(copy, name, getattr(msg, name))
    copy.form = form
    return copy


def has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(has_float(v) for v in value)
    return False


def assert_round_trips(msg: Message) -> None:
    """Both encoders agree on ``msg`` in both forms, and both decoders read each back as ``msg``."""
    for form in FORMS:
        expected = with_form(msg, form)
        from_pure, from_compiled = pure.encode(msg, form), compiled.encode(msg, form)
        assert same_json(json.loads(from_pure), json.loads(from_compiled)), (from_pure, from_compiled)
        if not has_float(msg.params) and not has_float(msg.data):
            assert from_pure == from_compiled, (from_pure, from_compiled)
        for raw in (from_pure, from_compiled):
            for decode in (pure.decode, compiled.decode):
                got = decode(raw)
                assert same_message(got, expected), f"{decode.__module__}: {raw!r}\n{got!r}"


def check(raw: bytes) -> None:
    """Everything the oracle says about one input: the same verdict, and a valid message round-trips."""
    verdict = assert_agree(raw)
    if verdict[0] == "ok":
        assert_round_trips(verdict[1])
