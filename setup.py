"""Build the cplscope host library: pure Python from host/, Cython kernels from ext/.

Every ``ext/NAME.pyx`` becomes the extension module ``cplscope.NAME``.
"""
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent

extensions = [
    Extension(
        f"cplscope.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[np.get_include(), "ext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted((HERE / "ext").glob("*.pyx"))
]

# The firmware ships inside the package (cplscope/firmware/) so that the simulated instrument
# and `cplscope flash` work after a plain `pip install .`. It is MicroPython source: data for
# the host, never imported by CPython.
FIRMWARE_PACKAGES = ["cplscope.firmware"] + [
    "cplscope.firmware." + p for p in find_packages("firmware")]

setup(
    package_dir={"": "host", "cplscope.firmware": "firmware"},
    packages=find_packages("host") + FIRMWARE_PACKAGES,
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    zip_safe=False,
)
