"""The deployment of docs/deploy.md: three ``wsa-fast serve --nats`` nodes behind nginx.

The nginx configuration is rendered into a temporary directory with the ports of three real
gateway nodes (joined by one real ``nats-server``) and run as it is with ``nginx -c``; every
check then goes through nginx with the independent ``websockets`` library over ``wss://``
(a certificate from a CA the test makes): the health check, the subprotocol handshake, and nine
clients spread over the three nodes that reach each other (relay) and all hear each other's
broadcasts, as if there were one gateway. Each test runs twice: TLS terminated at nginx
(``deploy/nginx.conf``, plain nodes) and TLS passed through to nodes serving ``wss://``
themselves (``deploy/nginx-tls-passthrough.conf``, nginx's stream module).

nginx is installed with apt-get when missing (Debian's ``nginx-light``, else ``nginx``, and
``libnginx-mod-stream`` for the passthrough); when it cannot be, the tests fail rather than skip, since the
deployment guide would be untested.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from apt import find_binary, install
from nats_server import NatsServer, free_port
from tls_ca import TestCA
from wsa_ws import (
    FORMS,
    ROOT,
    SUBPROTOCOL,
    Clients,
    GatewayProcess,
    Peer,
    aio,
    encode,
    expect_fail,
    expect_response,
    first_message,
    http_get,
    new_id,
    uid,
)

# May first install nginx with apt-get (waiting up to 10 minutes for the dpkg lock).
pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]

TERMINATED = "tls-terminated"
PASSTHROUGH = "tls-passthrough"
CONFS = {TERMINATED: ROOT / "deploy" / "nginx.conf", PASSTHROUGH: ROOT / "deploy" / "nginx-tls-passthrough.conf"}
# Debian's dynamic stream module (libnginx-mod-stream).
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
NODES = 3
CLIENTS = 9
PLACEHOLDER = re.compile(r"@[A-Z0-9_]+@")

NGINX_START_TIMEOUT = 10.0
NGINX_STOP_TIMEOUT = 10.0
# Presence travels between nodes through NATS: a target just logged in on another node may be
# unknown for a few milliseconds. A relay answered NOT_FOUND is retried for this long.
PRESENCE_TIMEOUT = 5.0
RETRY_PAUSE = 0.05
METHOD = "deploy@v1/hello"
TCP_ESTABLISHED = "01"


# ---------------------------------------------------------------- nginx itself


def find_nginx() -> str | None:
    return find_binary("nginx", "/usr/sbin/nginx")


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    return find_nginx() or install("nginx", ("nginx-light", "nginx"), find_nginx)


def find_stream_module() -> str | None:
    return str(STREAM_MODULE) if STREAM_MODULE.exists() else None


def render_conf(conf: Path, run_dir: Path, listen_port: int, node_ports: list[int], extra: dict[str, str]) -> Path:
    """``conf`` with its placeholders filled in, written into ``run_dir``."""
    values = {"@RUN_DIR@": str(run_dir), "@LISTEN_ADDR@": "127.0.0.1", "@LISTEN_PORT@": str(listen_port), **extra}
    values.update({f"@NODE{n}_PORT@": str(port) for n, port in enumerate(node_ports, 1)})
    text = conf.read_text()
    for placeholder, value in values.items():
        assert placeholder in text, f"{conf} has no {placeholder}"
        text = text.replace(placeholder, value)
    assert not PLACEHOLDER.findall(text), f"{conf} has placeholders the test does not fill: {PLACEHOLDER.findall(text)}"
    path = run_dir / "nginx.conf"
    path.write_text(text)
    return path


class Nginx:
    """``nginx -c CONF -g 'daemon off;'`` in the foreground, all its files in ``run_dir``."""

    def __init__(self, binary: str, conf: Path, run_dir: Path, port: int) -> None:
        self.run_dir = run_dir
        self.port = port
        # -p and -e keep even the files nginx opens before reading the config inside run_dir.
        self.command = [binary, "-p", str(run_dir), "-e", str(run_dir / "error.log"), "-c", str(conf)]
        checked = subprocess.run([*self.command, "-t"], capture_output=True, text=True, timeout=30)
        # With -e, nginx writes its verdict to that file rather than to stderr.
        assert checked.returncode == 0, f"nginx -t refuses {conf}:\n{checked.stderr}{self.log}"
        self.output = open(run_dir / "nginx.out", "wb")
        self.proc = subprocess.Popen(
            [*self.command, "-g", "daemon off;"], stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + NGINX_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.output.close()
                pytest.fail(f"nginx exited with {self.proc.returncode}:\n{self.log}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(
                        f"nginx did not listen on {port} within {NGINX_START_TIMEOUT}s:\n{self.log}", pytrace=False
                    )
                time.sleep(0.02)

    @property
    def log(self) -> str:
        texts = []
        for name in ("nginx.out", "error.log"):
            path = self.run_dir / name
            if path.exists():
                texts.append(f"--- {name}\n{path.read_text(errors='replace')}")
        return "\n".join(texts)

    def stop(self) -> None:
        """SIGQUIT (graceful), SIGTERM (fast), then SIGKILL."""
        for signum in (signal.SIGQUIT, signal.SIGTERM):
            if self.proc.poll() is None:
                self.proc.send_signal(signum)
                try:
                    self.proc.wait(NGINX_STOP_TIMEOUT / 2)
                except subprocess.TimeoutExpired:
                    pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.output.close()


class Deployment:
    """nginx in front of the nodes; ``host``, ``port`` and ``url_for`` as a GatewayProcess has them,
    so ``Clients``, ``open_ws`` and ``http_get`` of wsa_ws.py connect through nginx."""

    def __init__(self, nginx: Nginx, nodes: list[GatewayProcess], ca: TestCA) -> None:
        self.nginx = nginx
        self.nodes = nodes
        self.host = "127.0.0.1"
        self.port = nginx.port
        # How clients verify wss://, whoever terminates TLS: a context, and the CA's PEM file.
        self.ssl_context = ca.client_context()
        self.ca_file = ca.path

    def url_for(self, path: str = "/", **query: str) -> str:
        url = f"wss://{self.host}:{self.port}{path}"
        return f"{url}?{urlencode(query)}" if query else url


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.fixture(params=[TERMINATED, PASSTHROUGH])
def deployment(request, nats, start_gateway, nginx_binary) -> Iterator[Deployment]:
    """Three nodes on one NATS server, behind nginx with TLS terminated there or passed through to
    the nodes; stopped nginx first, NATS last."""
    # nginx's workers may drop root: the directory must be reachable by them, so not pytest's 0700 tmp_path.
    with tempfile.TemporaryDirectory(prefix="wsa-nginx-") as tmp:
        run_dir = Path(tmp)
        run_dir.chmod(0o755)
        ca = TestCA(run_dir)
        issued = ca.issue("gateway")
        if request.param == TERMINATED:
            nodes = [start_gateway("--nats", nats.url) for _ in range(NODES)]
            extra = {"@TLS_CERT@": str(issued.cert), "@TLS_KEY@": str(issued.key)}
        else:
            tls = ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key)]
            nodes = [start_gateway("--nats", nats.url, *tls) for _ in range(NODES)]
            module = find_stream_module() or install(
                "nginx's stream module", ("libnginx-mod-stream",), find_stream_module
            )
            extra = {"@STREAM_MODULE@": module}
        listen_port = free_port()
        conf = render_conf(CONFS[request.param], run_dir, listen_port, [n.port for n in nodes], extra)
        nginx = Nginx(nginx_binary, conf, run_dir, listen_port)
        try:
            yield Deployment(nginx, nodes, ca)
        finally:
            nginx.stop()


# ---------------------------------------------------------------- helpers


def established(host: str, port: int) -> int:
    """TCP connections accepted on ``host``:``port`` and still open (from /proc/net/tcp and tcp6).

    The address counts as much as the port: a connection of another program may have the same
    local port number on another loopback address (127.0.0.2, say).
    """
    count = 0
    wanted = ipaddress.ip_address(host)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, local_port = fields[1].split(":")
            if int(local_port, 16) == port and fields[3] == TCP_ESTABLISHED and proc_net_address(address) == wanted:
                count += 1
    return count


def proc_net_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp* writes it: 32-bit words in hex, each in the machine's byte order
    (an IPv4 address mapped into IPv6 is given back as the IPv4 one)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(int.from_bytes(raw[i : i + 4], "big").to_bytes(4, sys.byteorder) for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def relay(a: Peer, b: Peer, n: int) -> None:
    """``a`` asks ``b`` and gets ``b``'s answer back; NOT_FOUND is retried while presence propagates."""
    deadline = time.monotonic() + PRESENCE_TIMEOUT
    while True:
        id = await a.request(b.cid, METHOD, {"n": n})
        who, message = await first_message(a, b)
        if who is b:
            break
        expect_fail(message, "NOT_FOUND", id=id, to=a.cid)
        assert time.monotonic() < deadline, (
            f"{a.cid} still gets NOT_FOUND for {b.cid} after {PRESENCE_TIMEOUT}s: the nodes do not share presence"
        )
        await asyncio.sleep(RETRY_PAUSE)
    assert message == {
        "from": a.cid,
        "to": b.cid,
        "type": "request",
        "id": id,
        "payload": {"method": METHOD, "params": {"n": n}},
    }, message
    await b.respond(a.cid, id, receipt=f"{b.cid} got {n}")
    expect_response(await a.recv(), frm=b.cid, id=id, to=a.cid, receipt=f"{b.cid} got {n}")


# ---------------------------------------------------------------- the tests


def test_healthz_through_nginx_answers_200_ok(deployment):
    status, body = http_get(deployment, "/healthz", context=deployment.ssl_context)
    assert status == 200, deployment.nginx.log
    assert body.strip() == b"ok"


@aio
async def test_subprotocols_pass_through_nginx_both_ways(deployment):
    """nginx forwards Sec-WebSocket-Protocol to the node and the node's choice back to the client:
    each form is echoed and spoken end to end."""
    async with Clients(deployment) as cl:
        for form in FORMS:
            peer = await cl.open(form, "subprotocol")
            assert peer.ws.subprotocol == SUBPROTOCOL[form]
            id = await peer.request("server", "wsa@v1/ping", frm="")
            assert await peer.recv_raw() == encode(form, "server", "", "response", id, result="success")
            me = uid("dep")
            reply = await peer.login(me)
            assert reply["payload"] == {"result": "success", "receipt": me}, reply
            await peer.ping()


@aio
async def test_clients_on_three_nodes_behind_nginx_act_as_one_gateway(deployment):
    """Nine clients land on all three nodes; each reaches every other (relay) and hears every
    other's broadcast, whichever nodes they are on."""
    forms = [FORMS[i % len(FORMS)] for i in range(CLIENTS)]
    async with Clients(deployment) as cl:
        peers = [await cl.open(form, login=uid("dep")) for form in forms]

        # The nodes' accepted connections are nginx's upstream connections, one per client.
        spread = {node.port: established(node.host, node.port) for node in deployment.nodes}
        assert sum(spread.values()) == CLIENTS, spread
        assert all(spread.values()), f"least_conn should use every node, got connections per port {spread}"

        n = 0
        for a in peers:
            for b in peers:
                if a is not b:
                    n += 1
                    await relay(a, b, n)

        for sender in peers:
            id = new_id()
            await sender.event("client", "deploy@v1/news", {"by": sender.cid}, id=id)
            for peer in peers:
                if peer is not sender:
                    assert await peer.recv() == {
                        "from": sender.cid,
                        "to": "client",
                        "type": "event",
                        "id": id,
                        "payload": {"method": "deploy@v1/news", "params": {"by": sender.cid}},
                    }
        # Nobody hears its own broadcast, and nothing else is left over.
        for peer in peers:
            await peer.silent(0.1)
