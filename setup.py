"""Build the Cython hot path. simdjson's amalgamated sources come from the pysimdjson wheel."""

import os
import sys

import simdjson
from Cython.Build import cythonize
from setuptools import Extension, setup

SIMDJSON_DIR = os.path.dirname(simdjson.__file__)
CY_DIR = os.path.join("src_cy", "wsa_fast")
DEBUG = os.environ.get("WSA_FAST_DEBUG") == "1"
# make sanitize: AddressSanitizer and UndefinedBehaviorSanitizer, built apart from the normal build.
SANITIZE = os.environ.get("WSA_FAST_SANITIZE") == "1"

cxx_args = ["-std=c++17", "-O0" if DEBUG else "-O3", "-g" if DEBUG else "-g0"]
# Portable by default: the build runs on any CPU of its platform. WSA_FAST_MARCH=native tunes a
# from-source build to this CPU (its .so may then crash elsewhere with an illegal instruction).
march = os.environ.get("WSA_FAST_MARCH", "")
if march:
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
        depends=[os.path.join(CY_DIR, f"{h}.hpp") for h in ("wsa_parse", "wsa_decoder", "wsa_kernel")],
        language="c++",
        extra_compile_args=cxx_args,
        extra_link_args=link_args,
        define_macros=macros,
    )


extensions = [
    # The decoder on simdjson's builtin kernel and, for portable x86-64 builds, on each SIMD kernel.
    extension(
        "_codec",
        *(
            os.path.join(CY_DIR, f"{unit}.cpp")
            for unit in (
                "simdjson_build",
                "wsa_kernels",
                "wsa_kernel_icelake",
                "wsa_kernel_haswell",
                "wsa_kernel_westmere",
            )
        ),
    ),
    extension("_routing"),
    extension("_policy"),
    extension("_context"),
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
