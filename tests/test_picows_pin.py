"""wsa-fast runs only on the picows release it is built against (wsa_fast/picows_pin.py).

Another release is installed for real (pip, into a folder put first on PYTHONPATH) and
`wsa-fast serve` and `wsa-fast bench` must refuse it with one line and exit 2, before loading
any compiled module.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from gateway_process import ROOT, WSA_FAST

# Installs another picows release with pip.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

OTHER_PICOWS = "2.3.0"


def pins() -> tuple[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = [r for r in project["build-system"]["requires"] if r.startswith("picows")]
    runtime = [r for r in project["project"]["dependencies"] if r.startswith("picows")]
    return build[0], runtime[0]


def test_build_and_runtime_pin_the_same_picows():
    build, runtime = pins()
    assert build == runtime and build.startswith("picows==")


@pytest.fixture(scope="module")
def other_picows(tmp_path_factory) -> str:
    """A folder holding another picows release, really installed by pip."""
    folder = tmp_path_factory.mktemp("picows")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder), f"picows=={OTHER_PICOWS}"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return str(folder)


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["bench", "ws://127.0.0.1:9/"]])
def test_another_picows_release_is_refused_in_one_line(other_picows, command):
    pinned = pins()[1].split("==")[1]
    assert OTHER_PICOWS != pinned
    done = subprocess.run(
        [WSA_FAST, *command],
        env={"PYTHONPATH": other_picows, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(
        f"wsa-fast: error: picows {OTHER_PICOWS} is installed, but wsa-fast was built "
        f"and tested against picows {pinned}"
    ), done.stderr
