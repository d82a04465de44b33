"""The decoder on each simdjson kernel this CPU runs gives the reference codec's answers.

A portable x86-64 build holds the decoder once per simdjson kernel (icelake, haswell, westmere
and the scalar fallback) and picks the best one the CPU has at run time (wsa_kernels.cpp).
``SIMDJSON_FORCE_IMPLEMENTATION`` makes simdjson, and so the decoder, take another one: each is
run through the codec's case table and, fewer examples each, its property tests.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from gateway_process import ROOT

from wsa_fast import _codec

# Every kernel against the reference on thousands of generated messages: tens of seconds each.
pytestmark = pytest.mark.slow

# CPU flags (/proc/cpuinfo) each x86-64 kernel needs, as simdjson checks them.
NEEDS = {
    "icelake": {
        "avx512f",
        "avx512dq",
        "avx512cd",
        "avx512bw",
        "avx512vbmi",
        "avx512_vbmi2",
        "avx512vl",
        "avx2",
        "bmi1",
        "pclmulqdq",
    },
    "haswell": {"avx2", "bmi1", "pclmulqdq", "abm"},
    "westmere": {"sse4_2", "pclmulqdq"},
    "fallback": set(),
}


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def runnable_kernels() -> list[str]:
    flags = cpu_flags()
    return [k for k in _codec.compiled_kernels() if k in NEEDS and NEEDS[k] <= flags]


def forced(kernel: str, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIMDJSON_FORCE_IMPLEMENTATION": kernel, "WSA_PROPERTY_SCALE": "0.2"}
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_decoder_runs_the_best_kernel_compiled_in():
    kernels = _codec.compiled_kernels()
    assert _codec.kernel() in kernels
    if platform.machine() == "x86_64" and os.path.exists("/proc/cpuinfo") and "fallback" in kernels:
        # A portable build: every SIMD kernel is there, and the CPU's best one is taken.
        assert kernels == ("icelake", "haswell", "westmere", "fallback")
        assert _codec.kernel() == runnable_kernels()[0]


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not os.path.exists("/proc/cpuinfo"),
    reason="run-time kernel choice exists on x86-64 only; elsewhere one kernel is built in",
)
@pytest.mark.parametrize("kernel", ["icelake", "haswell", "westmere", "fallback"])
def test_each_kernel_decodes_like_the_reference(kernel):
    if kernel not in runnable_kernels():
        pytest.skip(f"this build or CPU has no {kernel} kernel (compiled: {_codec.compiled_kernels()})")
    shown = forced(kernel, "-c", "from wsa_fast import _codec; print(_codec.kernel())")
    assert shown.stdout.strip() == kernel, shown.stderr
    run = forced(
        kernel,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_codec_cases.py",
        "tests/test_codec_properties.py",
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
