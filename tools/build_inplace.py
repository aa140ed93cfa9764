"""Developer helper: compile one or more ext/*.pyx kernels into host/cplscope/ in place.

    python tools/build_inplace.py _estimate _phasebin

Then run tests against the source tree with ``PYTHONPATH=host``. Builds only the named
kernels, so work in progress on another kernel cannot break yours. CI does not use this:
it installs the package with pip.
"""
import sys
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent.parent


def main(names: list[str]) -> None:
    exts = [
        Extension(
            f"cplscope.{n}",
            [str(ROOT / "ext" / f"{n}.pyx")],
            include_dirs=[np.get_include(), str(ROOT / "ext")],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=["-O3"],
        )
        for n in names
    ]
    dist = Distribution({
        "ext_modules": cythonize(exts, build_dir=str(ROOT / "build" / "cython"), compiler_directives={
            "language_level": 3, "boundscheck": False, "wraparound": False,
            "cdivision": True, "initializedcheck": False}),
        "package_dir": {"": "host"},
    })
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.build_temp = str(ROOT / "build" / "tmp")
    dist.run_command("build_ext")


if __name__ == "__main__":
    main(sys.argv[1:])
