"""What a user gets from the source tree: `make clean` keeps every source, the sdist holds exactly what builds.

The full path (sdist, a wheel built from it, auditwheel, the end-to-end tests against the installed
wheel) is `make dist`, which CI runs (.ci/run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile

import pytest
from gateway_process import ROOT

# Builds an sdist and runs `make clean` on a copy of the tree.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Cython output, compiled modules and build folders: what `make clean` must remove.
GENERATED = [
    "src_cy/wsa_fast/_codec.cpp",
    "src_cy/wsa_fast/_gateway.cpp",
    "src_cy/wsa_fast/_codec.html",
    "wsa_fast/_codec.cpython-311-x86_64-linux-gnu.so",
    "build/temp/x.o",
    "wsa_fast.egg-info/PKG-INFO",
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if (ROOT / line).is_file()]


def test_make_clean_removes_generated_files_and_keeps_every_tracked_one(tmp_path):
    tree = tmp_path / "tree"
    sources = tracked_files()
    for name in sources:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    for name in GENERATED:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("generated\n")
    subprocess.run(["make", "clean", f"VENV={tmp_path / 'venv'}"], cwd=tree, check=True, capture_output=True)
    assert [name for name in sources if not (tree / name).is_file()] == []
    assert [name for name in GENERATED if (tree / name).exists()] == []


def test_sdist_holds_the_build_sources_and_nothing_generated(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (sdist,) = tmp_path.glob("wsa_fast-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = {
        name
        for name in tracked_files()
        if name.startswith(("src_cy/", "wsa_fast/"))
        or name in ("README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py")
    }
    assert expected - names == set()
    generated = sorted(n for n in names if n.endswith((".cpp", ".c", ".so", ".html")) and n not in expected)
    assert generated == []
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
