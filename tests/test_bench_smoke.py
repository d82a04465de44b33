"""The bench's smoke run (``python bench/run.py --smoke``) passes: every scenario runs and nothing is lost.

No timing assertions: the smoke run sends too few messages to mean anything, and the box is shared.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

# Builds the floor echo and the Node peer, then runs every scenario of the bench suite.
pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_PY = os.path.join(ROOT, "bench", "run.py")


def bench_scenarios() -> list[str]:
    """The runner's own scenario list, so a new scenario is checked without editing this test."""
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved  # run.py puts bench/ first on the path; keep its modules out of other tests
    return list(module.SCENARIOS)


def test_bench_smoke_runs_every_scenario():
    servers = ["floor", "floor-single", "websockets", "node-ws", "wsa-fast"]
    if shutil.which("node") is None or shutil.which("npm") is None:
        servers.remove("node-ws")  # the Node peer needs both; the rest still runs
    env = dict(os.environ)
    # `wsa-fast` lives beside this interpreter, which may be a venv nobody activated.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [sys.executable, RUN_PY, "--smoke", "--servers", ",".join(servers)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = proc.stdout + "\n--- stderr ---\n" + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    for scenario in bench_scenarios():
        # A table row: `| wsa-fast | handler (wsa-fast only) | ...`.
        assert re.search(rf"^\| wsa-fast \| {re.escape(scenario)}[ |]", proc.stdout, re.M), (
            f"no wsa-fast row for {scenario}\n{report}"
        )
    assert re.search(r"^## Latency.*\n(?:.*\n)*?\| wsa-fast \| ", proc.stdout, re.M), (
        f"no wsa-fast latency row\n{report}"
    )
    # The fairness scenario's flooder is refused and closed; none of the calm clients or receivers is,
    # and its broadcasts reach the receivers.
    fairness = r"^clients disconnected: 0; broadcasts each receiver got: [1-9]\d*; flooder: \d+ sent"
    assert re.search(fairness, proc.stdout, re.M), (
        f"fairness: clients disconnected, no broadcast delivered, or no fairness result\n{report}"
    )
    # The gateway's own loop was probed (bench/loop_lag_app.py): its lag and CPU columns hold numbers.
    probed = r"^\| flood of 100 KB broadcasts \|.* \| [\d,.]+ / [\d,.]+ \| [\d,.]+ / [\d,.]+ \|$"
    assert re.search(probed, proc.stdout, re.M), f"fairness: no loop-lag figures from the gateway\n{report}"


def test_cluster_bench_smoke_runs_every_configuration():
    """``bench/run_cluster.py`` (--workers 2 against one, relay across nodes) runs and loses nothing."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run_cluster.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = proc.stdout + "\n--- stderr ---\n" + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    for config in ("ping, 1 worker", "ping, --workers 2", "relay, same worker", "relay, across workers"):
        assert re.search(rf"^\| {re.escape(config)}[^|]* \| [\d,]+ \|", proc.stdout, re.M), report
    # Where a message crossing workers spends its CPU, process by process.
    split = r"by process \(µs CPU/msg, median\): nats-server [\d.]+, receivers' node [\d.]+, senders' node [\d.]+$"
    assert re.search(split, proc.stdout, re.M), report


def test_bench_fails_when_the_gateway_under_test_is_missing(tmp_path):
    """A Python with no ``wsa-fast`` beside it: the full run fails at once instead of benchmarking the others."""
    bare_bin = tmp_path / "bin"
    bare_bin.mkdir()
    python = bare_bin / "python"
    python.symlink_to(os.path.realpath(sys.executable))  # outside any venv: no wsa-fast next to it
    proc = subprocess.run([str(python), RUN_PY], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"the gateway under test is missing: {bare_bin / 'wsa-fast'} not found" in proc.stderr
    assert "## Throughput" not in proc.stdout
