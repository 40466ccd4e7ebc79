"""Builds the tcache Python package with the repository's CMake build.

    /usr/bin/python3 -m pip install --no-build-isolation ./python

The compiled core, tcache._tcache, is the CMake target ``_tcache``
(python/CMakeLists.txt) built against the static C++ library from this
repository: the build needs what ./setup.sh installs (cmake, a C++20
compiler, Boost, xxHash, LZ4, hiredis, pybind11-dev, python3-dev), nothing
from the network. pip builds a local directory in place, so the sources
one level up are at hand; the CMake build tree is <repo>/build-pip/.
Environment: CMAKE_BUILD_PARALLEL_LEVEL (default: the machine's cores).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def project_version() -> str:
    """The version in the top-level CMakeLists.txt's project() (one source)."""
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(tcache VERSION ([0-9.]+)", text)
    if m is None:
        sys.exit("setup.py: cannot find 'project(tcache VERSION x.y.z' in CMakeLists.txt")
    return m.group(1)


class CMakeBuild(build_ext):
    """Builds tcache._tcache with CMake and copies the module where setuptools wants it."""

    def build_extension(self, ext: Extension) -> None:
        if not (ROOT / "lib" / "CMakeLists.txt").exists():
            sys.exit("setup.py: the tcache sources are not beside python/ "
                     f"(looked in {ROOT}); install from a checkout of the repository")
        cmake = shutil.which("cmake")
        if cmake is None:
            sys.exit("setup.py: cmake is not installed (apt-get install cmake, or ./setup.sh)")
        build = ROOT / "build-pip"
        configure = [
            cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DTCACHE_BUILD_PYTHON=ON", "-DTCACHE_BUILD_TESTS=OFF", "-DTCACHE_BUILD_TOOLS=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ]
        # A new tree uses Ninja when there is one; an existing tree keeps its generator.
        if shutil.which("ninja") and not (build / "CMakeCache.txt").exists():
            configure += ["-G", "Ninja"]
        subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run([cmake, "--build", str(build), "--target", "_tcache", "-j", jobs],
                       check=True)
        built = sorted((build / "python" / "tcache").glob("_tcache*.so"))
        if not built:
            sys.exit(f"setup.py: CMake built no _tcache module in {build / 'python' / 'tcache'}")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], target)


setup(
    version=project_version(),
    ext_modules=[Extension("tcache._tcache", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
