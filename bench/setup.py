"""Build the bench suite's Cython floor echo server in place: `python bench/setup.py`.

run.py calls this when the .so is missing or older than its .pyx (the load generator is `wsa-fast bench`,
built by the package).
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)

MODULES = ["floor_echo"]

setup(
    name="wsa-fast-bench",
    ext_modules=cythonize(
        [Extension(m, [f"{m}.pyx"], extra_compile_args=["-O2"]) for m in MODULES],
        compiler_directives={"language_level": 3},
        quiet=True,
    ),
    script_args=["build_ext", "--inplace"],
)
