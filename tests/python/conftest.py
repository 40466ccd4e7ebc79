"""Fixtures of the Python test suite (tests/python), run as
``PYTHONPATH=<build>/python /usr/bin/python3 -m pytest tests/python``
(ctest runs it as ``python_tests``).

- ``build_dir``: the CMake build directory the extension comes from.
- ``tmp_cache_dir``: a fresh 0700 directory; every test runs with
  TCACHE_DIR set to it and TCACHE_DISABLE, TCACHE_DEFAULT_TTL and
  TCACHE_BACKEND unset, so nothing touches ~/.cache.
- ``redis_server``: a real redis-server on a free loopback port, stopped by
  its pid (``.url``, ``.port``, ``.pid``, ``.stop()``, ``.start()``).
- ``cpp_peer``: the path of tests/python/cpp_peer.cc's program (C++
  decorators on a file, for the C++ <-> Python sharing tests).
"""

from __future__ import annotations

import os
import pathlib
import select
import shutil
import signal
import socket
import subprocess
import time

import pytest

_CONFIG_VARS = ("TCACHE_DISABLE", "TCACHE_DEFAULT_TTL", "TCACHE_BACKEND")


def _extension_build_dir() -> pathlib.Path | None:
    """<build> when tcache._tcache was imported from <build>/python/tcache/."""
    import tcache._tcache as ext

    so = pathlib.Path(ext.__file__).resolve()
    build = so.parent.parent.parent
    return build if (build / "CMakeCache.txt").exists() else None


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    env = os.environ.get("TCACHE_TEST_BUILD_DIR")
    found = pathlib.Path(env) if env else _extension_build_dir()
    if found is None or not (found / "CMakeCache.txt").exists():
        pytest.fail("no CMake build directory: set TCACHE_TEST_BUILD_DIR, or run with "
                    "PYTHONPATH=<build>/python (ctest -R python_tests does both)")
    return found


@pytest.fixture
def tmp_cache_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture(autouse=True)
def _isolated_config(tmp_cache_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCACHE_DIR", str(tmp_cache_dir))
    for name in _CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of this test on 127.0.0.1:port, no persistence."""

    READY = b"Ready to accept connections"
    START_DEADLINE = 30.0  # seconds; a busy machine starts it slowly

    def __init__(self, workdir: pathlib.Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server; "
                        "./setup.sh installs it)")
        self.exe = exe
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Starts the server (again, on the same port) and waits until it
        says it accepts connections (its log line, not a sleep)."""
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--loglevel", "notice",
             "--logfile", ""],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + self.START_DEADLINE
        while self.READY not in seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}: {seen[-500:]!r}")
            seen += chunk

    def stop(self) -> None:
        """Stops the server by its pid (SIGKILL: no shutdown save) and reaps it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: pathlib.Path):
    from tcache import _tcache
    if not _tcache.WITH_REDIS:
        pytest.skip("this build has no Redis tier (TCACHE_WITH_REDIS=OFF)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cpp_peer(build_dir: pathlib.Path) -> str:
    env = os.environ.get("TCACHE_TEST_CPP_PEER")
    path = pathlib.Path(env) if env else build_dir / "python" / "cpp_peer"
    if not path.exists():
        pytest.fail(f"cpp_peer is not built at {path}: build it with "
                    f"`cmake --build {build_dir} --target cpp_peer` (needs TCACHE_BUILD_TESTS)")
    return str(path)
