"""The load generator counts exactly: run with `pytest bench/tests`."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, "tests"))

import run  # noqa: E402
from faulty_echo import BAD, DROP, DUP, UNKNOWN  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def built():
    run.ensure_built()


def start(cmd):
    port = run.free_port()
    proc = subprocess.Popen([sys.executable] + cmd + ["--port", str(port)], cwd=BENCH)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def loadgen(port, *args):
    r = subprocess.run([sys.executable, os.path.join(BENCH, "run_loadgen.py"), "--url",
                        f"ws://127.0.0.1:{port}/", "--warmup", "0", "--drain", "1", *args],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("single", [False, True])
def test_floor_echo_loses_nothing(single):
    proc, port = start(["run_floor.py"] + (["--single-write"] if single else []))
    try:
        rc, res = loadgen(port, "--mode", "ping", "--expect", "echo", "--max-messages", "20000",
                          "--duration", "10", "--server-pid", str(proc.pid))
    finally:
        proc.terminate()
        proc.wait()
    assert rc == 0 and res["ok"]
    assert res["sent_total"] == res["delivered_total"] == 20000
    assert (res["lost"], res["duplicated"], res["unknown"], res["bad"]) == (0, 0, 0, 0)
    assert res["server_cpu_s"] >= 0


def test_faults_are_counted_exactly():
    m = 30000
    proc, port = start([os.path.join("tests", "faulty_echo.py")])
    try:
        rc, res = loadgen(port, "--mode", "ping", "--expect", "echo", "--max-messages", str(m),
                          "--duration", "10")
    finally:
        proc.terminate()
        proc.wait()
    assert rc == 1 and not res["ok"]
    assert res["sent_total"] == m
    assert res["lost"] == m // DROP
    assert res["duplicated"] == m // DUP
    assert res["bad"] == m // BAD
    assert res["unknown"] == m // UNKNOWN
    assert res["delivered_total"] == m - m // DROP
