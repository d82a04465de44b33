"""The lexical rules of profile section 3, as wsa_fast.grammar states them."""

from __future__ import annotations

import string

import pytest

from wsa_fast.grammar import (
    MAX_CLIENT_ID,
    MAX_METHOD,
    MAX_NESTING,
    RESERVED_IDS,
    is_client_id,
    is_code,
    is_message_id,
    is_method,
)


def test_limits_match_the_profile() -> None:
    assert (MAX_CLIENT_ID, MAX_METHOD, MAX_NESTING) == (64, 128, 128)
    assert RESERVED_IDS == {"server", "client", "s", "c"}


# ---- client ids: 1-64 of [A-Za-z0-9._:@-], none of server, client, s, c


@pytest.mark.parametrize(
    "value",
    [
        "alice",
        "a",
        "S",
        "C",
        "Server",
        "CLIENT",
        "servers",
        "clients",
        "sc",
        "cs",
        "x.y_z:w@v-1",
        "0",
        "-",
        ".",
        "@",
        ":",
        "_",
        "...",
        "user@example.com",
        "svc:worker-1",
        string.ascii_letters[:52],
        string.digits + "._:@-",
        "a" * 63,
        "a" * 64,
    ],
)
def test_client_id_valid(value: str) -> None:
    assert is_client_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "server",
        "client",
        "s",
        "c",  # reserved in one form or the other
        "",
        "a" * 65,
        "b" * 100,  # length
        "a b",
        " a",
        "a ",
        "a/b",
        "a#b",
        "a+b",
        "a,b",
        'a"b',
        "a\\b",
        "a\nb",
        "a\x00b",
        "a\tb",
        "al\u00e9",
        "\u0430lice",
        "\uff41",
        "a\u200b",  # non-ASCII look-alikes
        "alice\n",  # no trailing newline sneaking past $
    ],
)
def test_client_id_invalid(value: str) -> None:
    assert not is_client_id(value)


def test_client_id_every_allowed_character_alone() -> None:
    allowed = set(string.ascii_letters + string.digits + "._:@-")
    for code in range(0x180):
        ch = chr(code)
        assert is_client_id(ch) == (ch in allowed and ch not in RESERVED_IDS), repr(ch)


# ---- message ids: [a-z0-9]{5} or YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±hh:mm), ranges checked


@pytest.mark.parametrize(
    "value",
    [
        "abcde",
        "00000",
        "a1b2c",
        "zzzzz",
        "99999",
        "2025-05-14T11:27:31Z",
        "2025-05-14T11:27:31.536370717+08:00",  # the profile's example
        "2025-05-14T11:27:31.5Z",
        "2025-05-14T11:27:31.12Z",
        "2025-05-14T11:27:31.123456789Z",
        "2025-05-14T11:27:31-05:30",
        "2025-05-14T11:27:31+00:00",
        "2025-05-14T11:27:31.1-23:59",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2016-12-31T23:59:60Z",  # leap second
        "2025-02-31T00:00:00Z",  # day is range-checked, not calendar-checked
    ],
)
def test_message_id_valid(value: str) -> None:
    assert is_message_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abcd",
        "abcdef",
        "ABCDE",
        "abcdE",
        "ab-de",
        "ab de",
        "abcd\u00e9",
        "\uff41bcde",
        "abcd\n",
        "abcde\n",
        "2025-05-14T11:27:31",  # no offset
        "2025-05-14T11:27:31.Z",  # empty fraction
        "2025-05-14T11:27:31.1234567890Z",  # 10 fraction digits
        "2025-05-14T11:27:31,5Z",  # comma fraction
        "2025-00-14T11:27:31Z",
        "2025-13-14T11:27:31Z",
        "2025-05-00T11:27:31Z",
        "2025-05-32T11:27:31Z",
        "2025-05-14T24:00:00Z",
        "2025-05-14T11:60:00Z",
        "2025-05-14T11:27:61Z",
        "2025-05-14T11:27:31+24:00",
        "2025-05-14T11:27:31+23:60",
        "2025-05-14T11:27:31+0800",
        "2025-05-14T11:27:31+08",
        "2025-05-14T11:27:31+8:00",
        "2025-05-14T11:27:31z",
        "2025-05-14t11:27:31Z",
        "2025-05-14 11:27:31Z",
        "20250514T112731Z",
        "25-05-14T11:27:31Z",
        "2025-5-14T11:27:31Z",
        "02025-05-14T11:27:31Z",
        "2025-05-14T11:27:31ZZ",
        "2025-05-14T11:27:31+08:00Z",
        "2025-05-14T11:27:31Z ",
        "\u0662025-05-14T11:27:31Z",  # a non-ASCII digit
    ],
)
def test_message_id_invalid(value: str) -> None:
    assert not is_message_id(value)


@pytest.mark.parametrize("field, place", [("month", 5), ("day", 8), ("hour", 11), ("minute", 14), ("second", 17)])
def test_message_id_range_boundaries(field: str, place: int) -> None:
    low, high = {"month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59), "second": (0, 60)}[field]
    base = "2025-05-14T11:27:31Z"
    for value in range(0, 100):
        candidate = base[:place] + f"{value:02d}" + base[place + 2 :]
        assert is_message_id(candidate) == (low <= value <= high), candidate


def test_message_id_offset_boundaries() -> None:
    for hours in range(0, 100):
        for sign in "+-":
            assert is_message_id(f"2025-05-14T11:27:31{sign}{hours:02d}:00") == (hours <= 23)
    for minutes in range(0, 100):
        assert is_message_id(f"2025-05-14T11:27:31+00:{minutes:02d}") == (minutes <= 59)


def test_message_id_fraction_digits() -> None:
    for digits in range(0, 12):
        fraction = "." + "7" * digits if digits else ""
        assert is_message_id(f"2025-05-14T11:27:31{fraction}Z") == (digits <= 9)
    assert not is_message_id("2025-05-14T11:27:31.Z")


# ---- methods: at most 128 characters of [A-Za-z][A-Za-z0-9_-]*@v[0-9]+/[A-Za-z0-9_][A-Za-z0-9_./-]*


@pytest.mark.parametrize(
    "value",
    [
        "wsa@v1/ping",
        "auth@v1/login",
        "wsa@v1/error",
        "chat@v1/send",
        "a@v0/b",
        "A@v9/Z",
        "svc-name_2@v10/path/to.thing-x_y",
        "a@v1/_",
        "a@v1/0",
        "a@v123456/b",
        "a@v1/b/",
        "a@v1/b//c",
        "a@v1/b..",
        "a-@v1/b",
        "a_@v1/b",
    ],
)
def test_method_valid(value: str) -> None:
    assert is_method(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "wsa",
        "wsa@v1",
        "wsa@v1/",
        "wsa/ping",
        "wsa@1/ping",
        "wsa@v/ping",
        "wsa@vx/ping",
        "wsa@V1/ping",
        "wsa@v1.0/ping",
        "1wsa@v1/ping",
        "_wsa@v1/ping",
        "-wsa@v1/ping",
        "@v1/ping",
        "w.sa@v1/ping",
        "w/sa@v1/ping",
        "wsa@v1/.ping",
        "wsa@v1/-ping",
        "wsa@v1//ping",
        "wsa@v1/pi ng",
        "wsa@v1/p!ng",
        "wsa@v1/ping\n",
        "wsa@v1/p\u00efng",
        "ws\u00e5@v1/ping",
        "wsa@v1@v1/ping",
        "wsa@v\u0661/ping",
    ],
)
def test_method_invalid(value: str) -> None:
    assert not is_method(value)


def test_method_length_128_and_129() -> None:
    head = "svc@v1/"
    assert is_method(head + "e" * (128 - len(head)))
    assert len(head + "e" * (128 - len(head))) == 128
    assert not is_method(head + "e" * (129 - len(head)))


# ---- codes: [A-Z][A-Z0-9_]{0,63}


@pytest.mark.parametrize(
    "value",
    [
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "INVALID_MESSAGE",
        "INVALID_TARGET",
        "METHOD_NOT_FOUND",
        "NOT_FOUND",
        "TIMEOUT",
        "GONE",
        "DUPLICATE_ID",
        "RATE_LIMITED",
        "ALREADY_AUTHENTICATED",
        "CONFLICT",
        "UNAVAILABLE",
        "INTERNAL_ERROR",
        "E",
        "X1",
        "A_",
        "A__B",
        "E" * 64,
    ],
)
def test_code_valid(value: str) -> None:
    assert is_code(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not_found",
        "Not_Found",
        "NOT_FOUNd",
        "1ERROR",
        "_ERROR",
        "ERROR-X",
        "ERROR X",
        "ERROR.X",
        "E" * 65,
        "\u00c9RROR",
        "ERROR\n",
        " ERROR",
    ],
)
def test_code_invalid(value: str) -> None:
    assert not is_code(value)
