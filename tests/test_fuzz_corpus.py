"""The fuzzers' corpus, replayed by every test run (tests/fuzz/corpus, grown by ``make fuzz``).

codec/: inputs that reached new rules of the reference codec, each held to codec_oracle.check
(same verdict from both codecs, valid messages round-trip). network/: saved rounds of the
network fuzzer (tests/fuzz/network.py), each replayed against a real server with the same
checks: every answerable message answered once, every frame sent decodes, the server alive.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from codec_oracle import check
from fuzz.network import SERVER_ARGS, Fuzzer, load
from wsa_ws import running_server

CORPUS = Path(__file__).resolve().parent / "fuzz" / "corpus"
CODEC = sorted((CORPUS / "codec").iterdir())
NETWORK = sorted((CORPUS / "network").glob("*.json"))


def test_the_corpus_is_there():
    assert len(CODEC) >= 50 and len(NETWORK) >= 8, (len(CODEC), len(NETWORK))


def test_every_codec_input_gets_the_same_verdict_from_both_codecs():
    failures = []
    for path in CODEC:
        try:
            check(path.read_bytes())
        except AssertionError as error:
            failures.append(f"{path.name}: {error}")
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def server():
    with running_server(*SERVER_ARGS, allow_tracebacks=True) as srv:
        yield srv


@pytest.mark.parametrize("path", NETWORK, ids=lambda p: p.stem)
def test_network_round_replays_cleanly(server, path):
    scenario, seed, messages = load(path)
    Fuzzer(server).round(seed, scenario, messages)
