"""The decoder's cost per message on each simdjson kernel: a portable build against -march=native.

    python bench/run_decode_kernels.py        # about a minute: compiles two builds, prints a table

Compiles bench/decode_kernels.cpp with the package's decoder units (src_cy/wsa_fast) twice, as
setup.py does: portable (the default, as in a wheel) and with -march=native. Runs the native build,
then the portable one on each kernel (SIMDJSON_FORCE_IMPLEMENTATION). `fallback` on x86-64 is what a
portable build without run-time kernel choice would run. Needs g++ and pysimdjson (its sources).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src_cy", "wsa_fast")
UNITS = [
    os.path.join(SRC, f"{u}.cpp")
    for u in ("simdjson_build", "wsa_kernels", "wsa_kernel_icelake", "wsa_kernel_haswell", "wsa_kernel_westmere")
]
UNITS.append(os.path.join(HERE, "decode_kernels.cpp"))
KERNELS = ("icelake", "haswell", "westmere", "fallback")
LABELS = ("relay event", "4 KiB text params", "5 KiB nested params")


def build(name: str, flags: list[str], out: str, simdjson_dir: str) -> str:
    """Compile every unit with setup.py's flags (two at a time) and link them."""
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)

    def compile_one(unit: str) -> str:
        obj = os.path.join(folder, os.path.basename(unit) + ".o")
        subprocess.run(
            [
                "g++",
                "-std=c++17",
                "-O3",
                "-DSIMDJSON_EXCEPTIONS=0",
                *flags,
                "-I",
                SRC,
                "-I",
                simdjson_dir,
                "-c",
                unit,
                "-o",
                obj,
            ],
            check=True,
        )
        return obj

    with ThreadPoolExecutor(2) as pool:
        objects = list(pool.map(compile_one, UNITS))
    exe = os.path.join(folder, "decode_kernels")
    subprocess.run(["g++", "-o", exe, *objects], check=True)
    return exe


def measure(exe: str, kernel: str | None) -> tuple[str, list[tuple[int, float]]] | None:
    env = dict(os.environ)
    if kernel:
        env["SIMDJSON_FORCE_IMPLEMENTATION"] = kernel
    r = subprocess.run([exe], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return None  # the kernel does not run on this CPU
    name, *cells = r.stdout.split()
    return name, [(int(size), float(ns)) for size, ns in (c.split(":") for c in cells)]


def main() -> int:
    spec = importlib.util.find_spec("simdjson")  # only its files are needed, not the module
    if spec is None or spec.origin is None:
        raise SystemExit("needs simdjson's sources: pip install pysimdjson==7.0.2 (the package's build requirement)")
    simdjson_dir = os.path.dirname(spec.origin)
    out = os.path.join(HERE, "out", "decode_kernels")
    native = build("native", ["-march=native"], out, simdjson_dir)
    portable = build("portable", [], out, simdjson_dir)
    rows = [("-march=native", measure(native, None))]
    rows += [(f"portable, {k}", measure(portable, k)) for k in KERNELS]
    rows = [(label, res) for label, res in rows if res is not None]
    base = rows[0][1][1]
    sizes = [size for size, _ in base]
    print(
        "| build, kernel | "
        + " | ".join(f"{label} ({size} B), ns" for label, size in zip(LABELS, sizes))
        + " | ÷ native |"
    )
    print("|---|" + "---:|" * (len(sizes) + 1))
    for label, (kernel, cells) in rows:
        ratios = "/".join(f"{ns / b:.2f}" for (_, ns), (_, b) in zip(cells, base))
        print(f"| {label} ({kernel}) | " + " | ".join(f"{ns:,.0f}" for _, ns in cells) + f" | {ratios} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
