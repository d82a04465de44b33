"""Build the Cython hot path. simdjson's amalgamated sources come from the pysimdjson wheel."""
import os
import platform
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

import simdjson

SIMDJSON_DIR = os.path.dirname(simdjson.__file__)
CY_DIR = os.path.join("src_cy", "wsa_fast")
DEBUG = os.environ.get("WSA_FAST_DEBUG") == "1"
# make sanitize: AddressSanitizer and UndefinedBehaviorSanitizer, built apart from the normal build.
SANITIZE = os.environ.get("WSA_FAST_SANITIZE") == "1"

cxx_args = ["-std=c++17", "-O0" if DEBUG else "-O3", "-g" if DEBUG else "-g0"]
# simdjson On-Demand picks its SIMD kernel at compile time: build for the CPU it runs on
# (wheels set WSA_FAST_MARCH to a portable baseline such as x86-64-v2).
march = os.environ.get("WSA_FAST_MARCH", "native")
if march and platform.machine().lower() in ("x86_64", "amd64", "i686"):
    cxx_args.append(f"-march={march}")
if sys.platform != "win32":
    cxx_args.append("-fvisibility=hidden")
link_args = []
if SANITIZE:
    # After -O3, so these win; -O1 keeps stack traces readable and the tests fast enough.
    link_args = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    cxx_args += [*link_args, "-O1", "-g"]
# simdjson's error-code API only: a throw through the noexcept parse would abort the worker.
macros = [("SIMDJSON_EXCEPTIONS", "0")]
if DEBUG:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))


def extension(name, *extra_sources):
    return Extension(
        f"wsa_fast.{name}",
        [os.path.join(CY_DIR, f"{name}.pyx"), *extra_sources],
        include_dirs=[CY_DIR, SIMDJSON_DIR],
        depends=[os.path.join(CY_DIR, "wsa_parse.hpp")],
        language="c++",
        extra_compile_args=cxx_args,
        extra_link_args=link_args,
        define_macros=macros,
    )


extensions = [
    extension("_codec", os.path.join(CY_DIR, "simdjson_build.cpp")),
    extension("_routing"),
    extension("_gateway"),
    extension("_frame_gate"),
    # The load generator of `wsa-fast bench`.
    extension("_loadgen"),
]

setup(
    # Objects compiled with the sanitizers never mix with (or stand in for) the normal build's.
    options={"build": {"build_base": os.path.join("build", "sanitize")}} if SANITIZE else {},
    ext_modules=cythonize(
        extensions,
        include_path=["src_cy"],
        annotate=DEBUG,
        compiler_directives={
            "language_level": 3,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
    ),
)
