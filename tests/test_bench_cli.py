"""``wsa-fast bench URL``, the installed load tester, run as a user runs it against real servers.

Every run is capped with ``--max-messages`` so the counts it must report are known exactly:
against ``wsa-fast serve`` (one worker, ``--workers 2``, nodes behind the nginx of
docs/deploy.md) and the ``websockets`` peer gateway every message is answered once; against
tests/faulty_echo.py the drops, duplicates and garbage it makes on schedule are counted
exactly and the exit status is 1. No timing is asserted except the open-loop stall, which
must show at least the 100 ms the server stood still.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faulty_echo import BAD, DROP, DUP, UNKNOWN
from gateway_process import ROOT, WSA_FAST
from hdrh.histogram import HdrHistogram
from nats_server import free_port
from test_deploy_nginx import deployment, nats, nginx_binary  # noqa: F401 (fixtures: the deployment of docs/deploy.md)

# Each runs the load tester for seconds against servers it starts, some with --procs.
pytestmark = [pytest.mark.bench, pytest.mark.timeout(180)]

ECHO_APP = "tests.apps.echo_app:app"
RUN_TIMEOUT = 120
STALL_MS = 100


def bench(tmp_path: Path, url: str, *args: str, name: str = "result") -> tuple[int, dict | None, str, str]:
    """``wsa-fast bench URL ARGS --json FILE``: (exit status, the JSON result or None, stdout, stderr)."""
    out = tmp_path / f"{name}.json"
    done = subprocess.run(
        [WSA_FAST, "bench", url, *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    result = json.loads(out.read_text()) if out.exists() else None
    return done.returncode, result, done.stdout, done.stderr


def assert_exact(result: dict, sent: int, answered: int | None = None) -> None:
    """Every message answered exactly once, nothing else."""
    c = result["counts"]
    assert c == {
        "sent": sent,
        "answered": sent if answered is None else answered,
        "failed": 0,
        "lost": 0,
        "duplicated": 0,
        "unknown": 0,
        "garbled": 0,
        "skipped": 0,
        "disconnects": 0,
    }, result["counts"]
    assert result["fails"] == {} and result["ok"]


class Server:
    """A test server script that prints ``listening on ws(s)://127.0.0.1:PORT`` when ready."""

    def __init__(self, *command: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"{command} did not start: {line}{self.proc.stdout.read()}")
        self.url = line.split()[-1] + "/"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module", autouse=True)
def limits_off():
    """Every gateway this module starts (nodes behind nginx too) is loaded at full speed: no rate limits."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WSA_LIMITS", "off")
        yield


@pytest.fixture
def echo_server():
    started = []

    def start(*options: str) -> Server:
        server = Server(os.path.join("tests", "faulty_echo.py"), *options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# ---------------------------------------------------------------- wsa-fast serve

SCENARIOS = {
    # name: (bench arguments, messages sent, deliveries each)
    "ping": (["--scenario", "ping", "--clients", "4"], 20000, 1),
    "ping compact": (["--scenario", "ping", "--clients", "4", "--form", "compact"], 20000, 1),
    "relay": (["--scenario", "relay", "--clients", "8"], 20000, 1),
    "relay verbose to compact": (["--scenario", "relay", "--clients", "4", "--rx-form", "compact"], 20000, 1),
    "broadcast": (["--scenario", "broadcast", "--clients", "11", "--window", "8"], 2000, 10),
    "call": (["--scenario", "call", "echo@v1/echo", "--params", '{"n":1}', "--clients", "4"], 20000, 1),
    "open loop ping": (["--scenario", "ping", "--clients", "4", "--rate", "5000"], 5000, 1),
    "open loop call, spinning": (["--scenario", "call", "echo@v1/echo", "--rate", "5000", "--spin"], 5000, 1),
    "padded relay": (["--scenario", "relay", "--clients", "2", "--payload-bytes", "1000"], 5000, 1),
}


@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "--workers 2"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_against_wsa_fast_serve_is_counted_exactly(start_gateway, tmp_path, scenario, workers):
    args, sent, fanout = SCENARIOS[scenario]
    gateway = start_gateway("--workers", str(workers), app=ECHO_APP)
    rc, result, out, err = bench(
        tmp_path, gateway.url + "/", *args, "--max-messages", str(sent), "--duration", "60", "--drain", "5"
    )
    assert rc == 0, out + err
    assert_exact(result, sent, sent * fanout)
    # The table a person reads says the same.
    assert re.search(rf"^ +sent +{sent:,}$", out, re.M) and re.search(rf"^ +answered +{sent * fanout:,}$", out, re.M)
    assert out.rstrip().endswith("\nOK"), out
    hdr = HdrHistogram.decode(result["histogram"].encode())
    assert hdr.get_total_count() == sent * fanout  # no warmup: every answer was timed
    assert result["summary"]["generator_us_per_msg"] > 0


@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "--workers 2"])
def test_connect_opens_logs_in_and_holds_every_connection(start_gateway, tmp_path, workers):
    gateway = start_gateway("--workers", str(workers))
    rc, result, out, err = bench(
        tmp_path, gateway.url + "/", "--scenario", "connect", "--clients", "300", "--duration", "1"
    )
    assert rc == 0, out + err
    assert_exact(result, 300)
    assert HdrHistogram.decode(result["histogram"].encode()).get_total_count() == 300
    assert "logins/s" in out
    # Held: the last tick still saw all of them open.
    assert result["timeline"][-1]["connected"] == 300


def test_the_progress_line_counts_the_held_connections_the_server_closes(start_gateway, tmp_path):
    gateway = start_gateway()
    args = [WSA_FAST, "bench", gateway.url + "/", "--scenario", "connect", "--clients", "20", "--duration", "100"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        lines = iter(proc.stderr)
        # All logged in and held, then the gateway stops: it closes every one of them.
        assert any("clients 20/20" in line for line in lines)
        gateway.stop()
        assert any("clients 0/20" in line for line in lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(RUN_TIMEOUT) != 0  # a run whose connections were closed under it failed
    finally:
        proc.kill()
        proc.wait()


def test_source_address_is_where_the_connections_come_from(start_gateway, tmp_path):
    # Two connections per address: the third from 127.0.0.2 is refused (429), though 127.0.0.1 has none.
    gateway = start_gateway("--max-connections-per-ip", "2")
    rc, result, out, err = bench(
        tmp_path,
        gateway.url + "/",
        "--scenario",
        "connect",
        "--clients",
        "3",
        "--window",
        "1",
        "--duration",
        "0.5",
        "--source-address",
        "127.0.0.2",
    )
    assert rc == 1, out + err
    assert (result["counts"]["answered"], result["counts"]["failed"]) == (2, 1), result["counts"]
    assert result["fails"] == {"upgrade: WSInvalidStatusError": 1}, result["fails"]
    assert gateway.wait_for_log("refusing a connection from 127.0.0.2: max_connections_per_ip (2) reached")
    rc, result, out, err = bench(
        tmp_path, gateway.url + "/", "--scenario", "connect", "--clients", "2", "--duration", "0.5", name="default"
    )
    assert rc == 0, out + err


def test_fail_responses_are_counted_by_code_and_fail_the_run(start_gateway, tmp_path):
    gateway = start_gateway(app=ECHO_APP)
    rc, result, out, err = bench(
        tmp_path,
        gateway.url + "/",
        "--scenario",
        "call",
        "echo@v1/fail",
        "--params",
        '{"code":"TEAPOT"}',
        "--max-messages",
        "3000",
        "--duration",
        "60",
    )
    assert rc == 1, out + err
    c = result["counts"]
    assert (c["sent"], c["answered"], c["failed"], c["lost"]) == (3000, 0, 3000, 0), c
    assert result["fails"] == {"TEAPOT": 3000}
    assert "fail TEAPOT" in out and "FAIL:" in out


@pytest.mark.parametrize("form", ["verbose", "compact"])
def test_expected_fail_responses_count_as_answered_and_others_still_fail(start_gateway, tmp_path, form):
    gateway = start_gateway(app=ECHO_APP)
    call = ["--scenario", "call", "echo@v1/fail", "--params", '{"code":"TEAPOT"}', "--form", form]
    rc, result, out, err = bench(
        tmp_path, gateway.url + "/", *call, "--expect-fail", "TEAPOT", "--max-messages", "3000", "--duration", "60"
    )
    assert rc == 0, out + err
    c = result["counts"]
    assert (c["sent"], c["answered"], c["failed"], c["lost"], c["garbled"]) == (3000, 3000, 0, 0, 0), c
    # Another code than the expected one is still a failure, counted by its code.
    rc, result, out, err = bench(
        tmp_path,
        gateway.url + "/",
        *call,
        "--expect-fail",
        "CONFLICT",
        "--max-messages",
        "1000",
        "--duration",
        "60",
        name="other",
    )
    assert rc == 1, out + err
    assert (result["counts"]["answered"], result["counts"]["failed"]) == (0, 1000), result["counts"]
    assert result["fails"] == {"TEAPOT": 1000}


@pytest.mark.parametrize("auth", ["tokens", "jwt"])
def test_clients_log_in_with_a_token_file_or_minted_jwts(start_gateway, tmp_path, auth):
    if auth == "tokens":
        tokens = tmp_path / "tokens.txt"
        tokens.write_text("".join(f"secret-{k} user{k}\n" for k in range(6)))
        gateway = start_gateway("--auth", f"tokens:{tokens}")
        creds = ["--token-file", str(tokens)]
    else:
        gateway = start_gateway("--auth", "jwt", env={"WSA_JWT_SECRET": "s3cret-for-the-bench-test-0123456789"})
        creds = ["--jwt-secret", "s3cret-for-the-bench-test-0123456789"]
    rc, result, out, err = bench(
        tmp_path,
        gateway.url + "/",
        "--scenario",
        "relay",
        "--clients",
        "6",
        "--max-messages",
        "6000",
        "--duration",
        "60",
        *creds,
    )
    assert rc == 0, out + err
    assert_exact(result, 6000)
    assert result["settings"]["auth"] == "token-file" if auth == "tokens" else "jwt"


def test_a_refused_login_stops_the_run_with_one_line(start_gateway, tmp_path):
    gateway = start_gateway("--auth", "jwt", env={"WSA_JWT_SECRET": "the-right-secret-0123456789abcdef"})
    rc, result, out, err = bench(
        tmp_path,
        gateway.url + "/",
        "--scenario",
        "relay",
        "--clients",
        "2",
        "--jwt-secret",
        "a-wrong-secret-0123456789abcdefgh",
    )
    assert rc == 1 and result is None
    assert err.strip().count("\n") == 0 and "PERMISSION_DENIED" in err and "Traceback" not in err, err


def test_two_nodes_behind_nginx(deployment, tmp_path):  # noqa: F811 (the fixture imported above)
    """The deployment of docs/deploy.md, over wss:// (TLS terminated at nginx or passed through to the
    nodes): relay pairs and broadcast receivers spread over the nodes."""
    url = deployment.url_for("/")
    ca = deployment.nginx.run_dir / "ca.pem"  # the test CA that issued the deployment's certificate
    assert url.startswith("wss://") and ca.exists()
    for name, args, sent, fanout in [
        ("ping", ["--scenario", "ping", "--clients", "6"], 10000, 1),
        ("relay", ["--scenario", "relay", "--clients", "12"], 10000, 1),
        ("broadcast", ["--scenario", "broadcast", "--clients", "7", "--window", "4"], 1000, 6),
        ("call", ["--scenario", "call", "wsa@v1/ping", "--clients", "6", "--form", "compact"], 10000, 1),
    ]:
        rc, result, out, err = bench(
            tmp_path,
            url,
            *args,
            "--max-messages",
            str(sent),
            "--duration",
            "60",
            "--drain",
            "5",
            "--ca-file",
            str(ca),
            name=name,
        )
        assert rc == 0, f"{name}:\n{out}{err}"
        assert_exact(result, sent, sent * fanout)
    rc, result, out, err = bench(
        tmp_path, url, "--scenario", "connect", "--clients", "60", "--duration", "0.5", "--ca-file", str(ca)
    )
    assert rc == 0, out + err
    assert_exact(result, 60)


# ---------------------------------------------------------------- other servers


def test_the_websockets_peer_gateway(tmp_path):
    """Not only wsa-fast: the hand-written websockets gateway of bench/peers speaks the protocol too."""
    port = free_port()
    peer = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "peers" / "websockets_gateway.py"), "--port", str(port)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert peer.poll() is None and time.monotonic() < deadline, "the websockets peer did not start"
                time.sleep(0.05)
        url = f"ws://127.0.0.1:{port}/"
        for name, args, sent, fanout in [
            ("ping", ["--scenario", "ping", "--clients", "4"], 10000, 1),
            ("relay", ["--scenario", "relay", "--clients", "4", "--form", "compact"], 10000, 1),
            ("broadcast", ["--scenario", "broadcast", "--clients", "5", "--window", "4"], 1000, 4),
        ]:
            rc, result, out, err = bench(
                tmp_path, url, *args, "--max-messages", str(sent), "--duration", "60", name=name
            )
            assert rc == 0, f"{name}:\n{out}{err}"
            assert_exact(result, sent, sent * fanout)
    finally:
        peer.terminate()
        peer.wait(10)


def test_faults_are_counted_exactly_and_fail_the_run(echo_server, tmp_path):
    m = 30000
    server = echo_server()
    rc, result, out, err = bench(
        tmp_path, server.url, "--echo", "--max-messages", str(m), "--duration", "60", "--drain", "1"
    )
    assert rc == 1, out + err
    c = result["counts"]
    assert c["sent"] == m
    assert c["lost"] == m // DROP
    assert c["duplicated"] == m // DUP
    assert c["garbled"] == m // BAD
    assert c["unknown"] == m // UNKNOWN
    assert c["answered"] == m - m // DROP
    assert not result["ok"] and "FAIL: " in out and "lost" in out


def test_wss_with_a_ca_file(echo_server, tmp_path):
    cert, key = self_signed(tmp_path)
    server = echo_server("--clean", "--tls-cert", str(cert), "--tls-key", str(key))
    assert server.url.startswith("wss://")
    rc, result, out, err = bench(
        tmp_path, server.url, "--echo", "--max-messages", "10000", "--duration", "60", "--ca-file", str(cert)
    )
    assert rc == 0, out + err
    assert_exact(result, 10000)
    # Without trusting the certificate, the run cannot start.
    rc, _, out, err = bench(tmp_path, server.url, "--echo", "--max-messages", "10", name="untrusted")
    assert rc == 1 and "CERTIFICATE_VERIFY_FAILED" in err, err


def test_open_loop_latency_shows_a_100ms_stall(echo_server, tmp_path):
    """The server stands still for 100 ms: messages due meanwhile waited, and open loop counts that wait."""
    server = echo_server("--clean", "--stall-after", "1000", "--stall-ms", str(STALL_MS))
    rc, result, out, err = bench(
        tmp_path, server.url, "--echo", "--rate", "2000", "--max-messages", "4000", "--duration", "60"
    )
    assert rc == 0, out + err
    assert_exact(result, 4000)
    lat = result["summary"]["latency_ns"]
    # ~200 of the 4000 were due during the stall: they waited from 0 up to 100 ms, so 1% waited > 80 ms.
    assert lat["max"] >= STALL_MS * 1e6, lat
    assert lat["p99"] >= STALL_MS * 1e6 / 2, lat


# ---------------------------------------------------------------- several processes, merging


def test_procs_and_merge_give_the_histogram_of_one_run_of_both_loads(echo_server, tmp_path):
    server = echo_server("--clean")
    rc, whole, out, err = bench(
        tmp_path, server.url, "--echo", "--clients", "4", "--procs", "2", "--max-messages", "20000", "--duration", "60"
    )
    assert rc == 0, out + err
    assert_exact(whole, 20000)
    assert whole["parts"] == 2 and len(whole["part_results"]) == 2
    # Each process's own result, written as --json would, then merged by the command.
    files = []
    for i, part in enumerate(whole["part_results"]):
        assert part["counts"]["sent"] == 10000
        files.append(tmp_path / f"part{i}.json")
        files[-1].write_text(json.dumps(part))
    merged_path = tmp_path / "merged.json"
    done = subprocess.run(
        [WSA_FAST, "bench", "merge", *map(str, files), "--json", str(merged_path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    merged = json.loads(merged_path.read_text())
    assert merged["counts"] == whole["counts"]
    a, b = (HdrHistogram.decode(x["histogram"].encode()) for x in (merged, whole))
    assert a.get_total_count() == b.get_total_count() == 20000
    assert list(a.counts) == list(b.counts)
    # And the parts add up bucket by bucket.
    parts = [HdrHistogram.decode(p["histogram"].encode()) for p in whole["part_results"]]
    assert [x + y for x, y in zip(parts[0].counts, parts[1].counts)] == list(a.counts)


def test_compiled_histogram_buckets_are_hdrhistogram_buckets():
    """Every value lands in the bucket hdrhistogram itself would put it in, so merging stays exact."""
    from wsa_fast._loadgen import Histogram
    from wsa_fast.loadtest.results import new_hdr, to_hdr

    values = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 99_999, 123_456_789, 10**10, 3_600_000_000_000]
    values += [int(1.37**k) for k in range(90)]
    compiled, reference = Histogram(), new_hdr()
    for v in values:
        compiled.record_ns(v)
        reference.record_value(v)
    converted = to_hdr(compiled)
    assert list(converted.counts) == list(reference.counts)
    assert converted.get_total_count() == len(values)


# ---------------------------------------------------------------- what a person sees


def test_progress_is_rewritten_in_place_on_a_terminal_and_plain_lines_otherwise(echo_server, tmp_path):
    server = echo_server("--clean")
    args = [WSA_FAST, "bench", server.url, "--echo", "--rate", "500", "--duration", "2.5"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if "answered" in line]
    assert len(lines) >= 2 and "\r" not in done.stderr and "clients 8/8" in lines[0], done.stderr
    # On a terminal: one line, rewritten with a carriage return.
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], RUN_TIMEOUT)
        try:
            chunk = os.read(leader, 4096) if ready else b""
        except OSError:  # the terminal closed: the run is over
            chunk = b""
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(RUN_TIMEOUT) == 0
    assert seen.count(b"\r\x1b[K") >= 2 and b"answered" in seen, seen


def test_slo_plot_and_table(echo_server, tmp_path):
    server = echo_server("--clean")
    plot = tmp_path / "latency.png"
    rc, result, out, err = bench(
        tmp_path,
        server.url,
        "--echo",
        "--max-messages",
        "5000",
        "--duration",
        "60",
        "--slo",
        "p99=60s",
        "--plot",
        str(plot),
    )
    assert rc == 0, out + err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10000
    for row in (
        "sent",
        "answered",
        "lost",
        "duplicated",
        "throughput",
        "latency p50",
        "latency p90",
        "latency p99 ",
        "latency p99.9",
        "latency max",
        "generator CPU",
    ):
        assert row in out, out
    rc, result, out, err = bench(
        tmp_path, server.url, "--echo", "--max-messages", "5000", "--duration", "60", "--slo", "p50=1ns", name="missed"
    )
    assert rc == 1 and result["slo"]["missed"] and "p50 <= 1 ns missed" in out, out


@pytest.mark.parametrize("procs", ["1", "2"])
def test_ctrl_c_ends_the_load_early_and_still_reports_it(echo_server, tmp_path, procs):
    server = echo_server("--clean")
    out = tmp_path / "result.json"
    # Its own process group, as a terminal's foreground job: Ctrl-C signals every process in it.
    proc = subprocess.Popen(
        [
            WSA_FAST,
            "bench",
            server.url,
            "--echo",
            "--clients",
            "4",
            "--procs",
            procs,
            "--duration",
            "600",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for line in proc.stderr:
            if "answered" in line:  # the first progress line: the load is running
                break
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr
    result = json.loads(out.read_text())
    assert result["interrupted"] and "(interrupted)" in stdout
    c = result["counts"]
    assert c["sent"] == c["answered"] > 0 and c["lost"] == c["duplicated"] == 0, c
    assert result["measured"]["seconds"] < 300


def test_plot_without_matplotlib_is_a_clear_usage_error(echo_server, tmp_path):
    """matplotlib is an optional extra: without it, --plot says how to get it before any load runs."""
    hidden = tmp_path / "no-matplotlib" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    server = echo_server("--clean")
    done = subprocess.run(
        [WSA_FAST, "bench", server.url, "--echo", "--plot", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(hidden.parent)},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'wsa-fast[plot]'" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "x.png").exists() and "answered" not in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "call"], "needs the method"),
        (["--scenario", "relay", "--clients", "3"], "even number"),
        (["--scenario", "broadcast", "--procs", "2"], "one process"),
        (["--slo", "p99=fast"], "--slo"),
        (["--payload-bytes", "10"], "--payload-bytes"),
        (["--spin"], "--rate"),
        (["--expect-fail", "CONFLICT"], "--expect-fail is for call"),
        (["--scenario", "call", "echo@v1/fail", "--expect-fail", "teapot"], "not a fail code"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(echo_server, tmp_path, args, message):
    server = echo_server("--clean")
    done = subprocess.run([WSA_FAST, "bench", server.url, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr


def test_nothing_listening_is_one_line_and_exit_1(tmp_path):
    done = subprocess.run(
        [WSA_FAST, "bench", f"ws://127.0.0.1:{free_port()}/"], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert done.returncode == 1
    assert "cannot connect" in done.stderr and "Traceback" not in done.stderr, done.stderr


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsa-fast bench test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
