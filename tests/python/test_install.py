"""`cmake --install` puts the package where Debian's Python imports it."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

PYTHON = "/usr/bin/python3"


def cache_value(build_dir: pathlib.Path, name: str) -> str:
    text = (build_dir / "CMakeCache.txt").read_text()
    m = re.search(rf"^{name}:[A-Z]+=(.*)$", text, re.MULTILINE)
    assert m is not None, f"{name} is not in {build_dir}/CMakeCache.txt"
    return m.group(1)


def test_install_dir_is_debians_and_a_pth_file_reaches_it(build_dir: pathlib.Path,
                                                          tmp_path: pathlib.Path) -> None:
    # The package goes to <prefix>/lib/python3/dist-packages; for a prefix
    # other than /usr, <prefix>/lib/python3.X/dist-packages/tcache.pth names
    # that directory, so that /usr/local (a site directory of Debian's
    # Python, unlike /usr/local/lib/python3/dist-packages) reaches it.
    assert cache_value(build_dir, "TCACHE_PYTHON_INSTALL_DIR") == "lib/python3/dist-packages"
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", str(build_dir), "--prefix", str(prefix),
                    "--component", "python"], check=True, capture_output=True)
    version = subprocess.run([PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    site_dir = prefix / "lib" / f"python{version}" / "dist-packages"
    package_dir = prefix / "lib" / "python3" / "dist-packages"
    assert (site_dir / "tcache.pth").read_text().strip() == str(package_dir)
    # What Debian's site.py does with /usr/local/lib/python3.X/dist-packages
    # (-S: without the machine's own site directories, where ./setup.sh
    # installs tcache too).
    probe = f"import site; site.addsitedir({str(site_dir)!r}); import tcache; print(tcache.__file__)"
    out = subprocess.run([PYTHON, "-S", "-c", probe], check=True, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"]}, cwd=tmp_path).stdout.strip()
    assert out.startswith(str(package_dir)), out


def test_cmake_install_into_a_prefix_imports(build_dir: pathlib.Path,
                                             tmp_path: pathlib.Path) -> None:
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", str(build_dir), "--prefix", str(prefix),
                    "--component", "python"], check=True, capture_output=True)
    site = prefix / cache_value(build_dir, "TCACHE_PYTHON_INSTALL_DIR")
    installed = sorted(p.name for p in (site / "tcache").iterdir())
    assert "errors.py" in installed and "_tcache.pyi" in installed
    assert any(n.startswith("_tcache.") and n.endswith(".so") for n in installed)
    probe = (
        "import os, tempfile, tcache._tcache as t, tcache.errors as e\n"
        "s = t.Store(os.path.join(tempfile.mkdtemp(), 'c.tcache'), capacity_bytes=1 << 20)\n"
        "s['k'] = b'v'\n"
        "assert s['k'] == b'v'\n"
        "print(t.__file__)\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(site)}
    out = subprocess.run([PYTHON, "-c", probe], check=True, capture_output=True, text=True,
                         env=env, cwd=tmp_path).stdout.strip()
    assert out.startswith(str(site)), out
