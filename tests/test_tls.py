"""wss:// served by the gateway itself (``--tls-cert``/``--tls-key``), one worker and several.

A test CA (tests/tls_ca.py) signs the server's certificates; clients trust only that CA and
check the name, as a browser would. A certificate replaced on disk is served to connections
made after SIGHUP, while connections already open carry on.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import pytest
from gateway_process import WSA_FAST
from tls_ca import Issued, TestCA
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage
from wsa_ws import Clients, aio, http_get, open_ws, uid

from wsa_fast.client import Client


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def served_certificate(ws) -> bytes:
    """The DER certificate a websockets connection was shown."""
    return ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)


def install(issued: Issued, cert: Path, key: Path) -> None:
    """Put ``issued`` where the gateway reads its certificate, as an operator's renewal would."""
    shutil.copyfile(issued.key, key)
    shutil.copyfile(issued.cert, cert)


def tls_flags(cert: Path, key: Path) -> list[str]:
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


@aio
async def tls_session(server, context: ssl.SSLContext) -> bytes:
    """Log in over wss:// with websockets and with the bundled client; returns the certificate seen."""
    async with Clients(server) as cl:
        peer = await cl.open("compact", login=uid("tls"), ssl=context)
        await peer.ping()
        seen = served_certificate(peer.ws)
    async with Client.connect(server.url, form="verbose", ssl_context=context) as client:
        me = uid("tlsc")
        assert await client.login(me) == me
        await client.ping()
    return seen


def test_wss_with_one_worker_serves_both_clients_and_healthz(start_gateway, ca):
    issued = ca.issue("one")
    server = start_gateway(*tls_flags(issued.cert, issued.key))
    assert server.url.startswith("wss://127.0.0.1:"), server.log
    assert tls_session(server, ca.client_context()) == issued.der
    assert http_get(server, "/healthz", context=ca.client_context()) == (200, b"ok\n")


def test_wss_with_two_workers(start_gateway, ca):
    issued = ca.issue("two")
    server = start_gateway("--workers", "2", *tls_flags(issued.cert, issued.key))
    assert server.url.startswith("wss://"), server.log
    assert tls_session(server, ca.client_context()) == issued.der


@aio
async def test_plain_ws_to_a_tls_port_is_not_served(start_gateway, ca):
    issued = ca.issue("plain")
    server = start_gateway(*tls_flags(issued.cert, issued.key))
    with pytest.raises((InvalidMessage, ConnectionError)):
        await connect(f"ws://{server.host}:{server.port}/", open_timeout=3)
    # The failed attempt did not disturb the server.
    async with Clients(server) as cl:
        await (await cl.open(ssl=ca.client_context())).ping()


@aio
async def test_a_client_that_does_not_trust_the_ca_is_refused(start_gateway, ca, tmp_path):
    issued = ca.issue("untrusted")
    server = start_gateway(*tls_flags(issued.cert, issued.key))
    (tmp_path / "other").mkdir()
    stranger = TestCA(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        await open_ws(server, ssl=stranger.client_context())


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_serves_the_new_certificate_to_new_connections_only(start_gateway, ca, tmp_path, workers):
    first, second = ca.issue("first"), ca.issue("second")
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    install(first, cert, key)
    server = start_gateway("--workers", str(workers), *tls_flags(cert, key))
    context = ca.client_context()

    @aio
    async def scenario():
        async with Clients(server) as cl:
            old = await cl.open(login=uid("old"), ssl=context)
            assert served_certificate(old.ws) == first.der
            install(second, cert, key)
            server.signal(signal.SIGHUP)
            # Each worker logs its reload: the barrier before any new connection.
            while server.log.count("SIGHUP: reloaded the TLS certificate") < workers:
                assert server.proc.poll() is None, server.log
                await asyncio.sleep(0.02)
            # Every worker now shows the new certificate: several new connections, spread by the kernel.
            for _ in range(4 * workers):
                new = await cl.open(login=uid("new"), ssl=context)
                assert served_certificate(new.ws) == second.der
                await new.ping()
            # The connection made before the reload was not dropped.
            await old.ping()

    scenario()
    assert server.proc.poll() is None


def test_sighup_with_a_broken_key_keeps_the_old_certificate(start_gateway, ca, tmp_path):
    first = ca.issue("keep")
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    install(first, cert, key)
    server = start_gateway(*tls_flags(cert, key))
    key.write_text("not a key\n")
    server.signal(signal.SIGHUP)
    assert server.wait_for_log("SIGHUP: keeping the current TLS certificate", 10), server.log
    assert tls_session(server, ca.client_context()) == first.der


@pytest.mark.parametrize("case", ["missing", "mismatched", "cert-only", "key-is-a-cert"])
def test_bad_tls_files_stop_start_up_with_one_line(ca, tmp_path, case):
    one, other = ca.issue("a"), ca.issue("b")
    flags = {
        "missing": tls_flags(tmp_path / "nope.pem", one.key),
        "mismatched": tls_flags(one.cert, other.key),
        "cert-only": ["--tls-cert", str(one.cert)],
        "key-is-a-cert": tls_flags(one.cert, one.cert),
    }[case]
    result = subprocess.run([WSA_FAST, "serve", "--port", "0", *flags], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsa-fast: error: ") and "tls_" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
