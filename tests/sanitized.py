"""Run a command with the sanitizer runtime in every process it starts; fail on any report.

    .venv-asan/bin/python tests/sanitized.py COMMAND [ARGS...]      (what make sanitize and make fuzz run)

The extensions must be an ASan+UBSan build (WSA_FAST_SANITIZE=1, installed in this Python's
venv). Python itself is not instrumented, so libasan is preloaded and PYTHONMALLOC=malloc
sends every object through it; a use after free of a bytes object is then caught. The
environment is inherited by every ``wsa-fast serve`` the tests start, whose stderr the tests
swallow: ASan's reports go to files under build/sanitize/reports-PID, and any file there fails the
run. GCC's UBSan prints to stderr whatever its log_path says, so it halts on its first report (the
process fails) and tests/gateway_process.py fails a test whose server printed one. Leak detection is
off: CPython does not free everything at exit, and those leaks are not ours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One folder per run, so that runs side by side (make sanitize beside make fuzz) keep theirs apart.
REPORTS = ROOT / "build" / "sanitize" / f"reports-{os.getpid()}"


def sanitizer_env() -> dict[str, str]:
    libasan = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return dict(
        os.environ,
        LD_PRELOAD=libasan,
        PYTHONMALLOC="malloc",
        ASAN_OPTIONS=f"detect_leaks=0:log_path={REPORTS}/asan",
        UBSAN_OPTIONS=f"halt_on_error=1:print_stacktrace=1:log_path={REPORTS}/ubsan",
    )


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    shutil.rmtree(REPORTS, ignore_errors=True)
    REPORTS.mkdir(parents=True)
    env = sanitizer_env()
    # The source tree holds the normal build: the sanitized one must be what gets imported.
    where = subprocess.run(
        [sys.executable, "-P", "-c", "import wsa_fast._codec as c; print(c.__file__)"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if where.returncode != 0 or not where.stdout.startswith(sys.prefix):
        print(
            f"sanitized.py: wsa_fast is not the sanitized build of {sys.prefix}: {where.stdout}{where.stderr}",
            file=sys.stderr,
        )
        return 2
    status = subprocess.call(argv, env=env, cwd=ROOT)
    reports = sorted(REPORTS.iterdir())
    for report in reports:
        print(f"==== {report.name}\n{report.read_text(errors='replace')}", file=sys.stderr)
    if reports:
        print(f"sanitized.py: {len(reports)} sanitizer report(s) in {REPORTS}", file=sys.stderr)
        return 1
    REPORTS.rmdir()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
