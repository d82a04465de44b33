"""Run the Autobahn|Testsuite fuzzing client against wsa-fast's frame layer (echo_server.py).

    python tests/autobahn/run.py [CASES ...]        # default: sections 1-7 and 9

autobahntestsuite (PyPI, 25.10.1) runs on Python 2.7 only: this looks for ``python2.7``
(on PATH or under pyenv), installs the suite into a scratch directory with that Python's
pip, starts the echo server on a free port and prints each case's verdict. Exit status 1
if any case failed. Not part of ``make test``: a fresh machine has no Python 2.7.
"""

from __future__ import annotations

import collections
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = "autobahntestsuite==25.10.1"
WORK = Path(tempfile.gettempdir()) / "wsa-fast-autobahn"
DEFAULT_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*"]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def python27() -> str:
    candidates = [str(p) for p in sorted((Path.home() / ".pyenv/versions").glob("2.7*/bin/python2.7"))]
    candidates.append(shutil.which("python2.7") or "")
    for candidate in filter(None, candidates):
        # pyenv's shim exists even when no 2.7 is selected: ask the interpreter itself.
        if (
            subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info[:2] == (2, 7)"], capture_output=True
            ).returncode
            == 0
        ):
            return candidate
    sys.exit("autobahntestsuite needs Python 2.7, which is not installed here")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(cases: list[str]) -> int:
    py2 = python27()
    target = WORK / "py2"
    if not (target / "autobahntestsuite").exists():
        subprocess.run([py2, "-m", "pip", "install", "-q", "--target", str(target), SUITE], check=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert "echo on" in server.stdout.readline()
        reports = WORK / "reports"
        shutil.rmtree(reports, ignore_errors=True)
        spec = WORK / "fuzzingclient.json"
        spec.write_text(
            json.dumps(
                {
                    "outdir": str(reports),
                    "cases": cases,
                    "exclude-cases": [],
                    "servers": [{"agent": "wsa-fast", "url": f"ws://127.0.0.1:{port}"}],
                }
            )
        )
        # The suite's packages live in a --target directory; addsitedir reads its .pth files (zope).
        runner = (
            f"import site, sys; site.addsitedir({str(target)!r}); from autobahntestsuite.wstest import run; "
            f"sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', {str(spec)!r}]; run()"
        )
        subprocess.run([py2, "-c", runner], cwd=WORK, check=True, stdout=subprocess.DEVNULL)
    finally:
        server.terminate()
        server.wait()
    results = json.loads((reports / "index.json").read_text())["wsa-fast"]
    verdicts = collections.Counter((r["behavior"], r["behaviorClose"]) for r in results.values())
    print(f"{len(results)} cases: " + ", ".join(f"{n} {b}/{c}" for (b, c), n in verdicts.most_common()))
    bad = sorted(k for k, r in results.items() if r["behavior"] not in PASSING or r["behaviorClose"] not in PASSING)
    for case in bad:
        print(f"  {case}: {results[case]['behavior']} / {results[case]['behaviorClose']}")
    print(f"report: {reports / 'index.html'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT_CASES))
