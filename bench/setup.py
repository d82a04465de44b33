"""Build the bench's Cython modules in place: `python bench/setup.py`.

run.py calls this when a module's .so is missing or older than its .pyx.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)

MODULES = ["loadgen", "floor_echo"]

setup(
    name="wsa-fast-bench",
    ext_modules=cythonize(
        [Extension(m, [f"{m}.pyx"], extra_compile_args=["-O2"]) for m in MODULES],
        compiler_directives={"language_level": 3},
        quiet=True,
    ),
    script_args=["build_ext", "--inplace"],
)
