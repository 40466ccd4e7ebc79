"""_tcache.Function: the C++ core of bcache/fcache/ucache/acache, resolved as
the C++ decorators resolve theirs, and push_config/pop_config/current_config."""

from __future__ import annotations

import gc
import json
import os
import pathlib
import stat
import subprocess
import threading

import pytest

from tcache import errors
from tcache._tcache import Function, current_config, pop_config, push_config
from waiting import wait_until


def compute_once(f: Function, args: tuple, value) -> object:
    """What a decorator wrapper does: lookup, and on a miss compute + store."""
    found, got = f.lookup(args)
    if found:
        return got
    f.store(got, value)
    return value


def test_bcache_miss_store_hit(tmp_cache_dir: pathlib.Path) -> None:
    f = Function("bcache", "sq", "1")
    found, lease = f.lookup((3,))
    assert found is False and lease.held
    f.store(lease, 9)
    assert not lease.held
    assert f.lookup((3,)) == (True, 9)
    info = f.info()
    assert (info["hits"], info["misses"], info["currsize"]) == (1, 1, 1)
    assert info["backend"] == f.backend_name == "file" and info["kind"] == "bcache"
    # The C++ default file: <TCACHE_DIR>/<name>.tcache, owner-only.
    path = tmp_cache_dir / "sq.tcache"
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_count_clear_invalidate(tmp_cache_dir: pathlib.Path) -> None:
    f = Function("bcache", "f")
    g = Function("bcache", "g", path=tmp_cache_dir / "f.tcache")  # same file, other name
    for i in range(5):
        compute_once(f, (i,), i)
    compute_once(g, (0,), "g")
    assert f.count() == 5 and g.count() == 1
    assert f.invalidate((0,)) is True and f.invalidate((0,)) is False
    assert f.clear() == 4 and f.count() == 0
    assert g.lookup((0,)) == (True, "g")  # another name's entries stay


def test_version_and_name_separate_entries(tmp_cache_dir: pathlib.Path) -> None:
    p = tmp_cache_dir / "shared.tcache"
    compute_once(Function("bcache", "f", "1", path=p), (1,), "v1")
    assert Function("bcache", "f", "1", path=p).lookup((1,)) == (True, "v1")
    found, lease = Function("bcache", "f", "2", path=p).lookup((1,))
    assert not found and lease.held
    found, lease = Function("bcache", "other", "1", path=p).lookup((1,))
    assert not found and lease.held
    # An int version is its decimal string, as in C++.
    assert Function("bcache", "f", 1, path=p).lookup((1,)) == (True, "v1")


def test_abandon_and_dropped_lease_release(tmp_cache_dir: pathlib.Path) -> None:
    f = Function("bcache", "f")
    _, lease = f.lookup((1,))
    f.abandon(lease)
    assert not lease.held
    _, lease = f.lookup((1,))  # taken again at once (not waiting on ourselves)
    assert lease.held
    del lease
    gc.collect()
    _, lease = f.lookup((1,))  # a token dropped uncompleted gave its lease up
    assert lease.held
    f.abandon(lease)


def test_folder_relative_and_absolute(tmp_cache_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    Function("bcache", "f", folder="sub")
    assert (tmp_cache_dir / "sub" / "f.tcache").exists()
    assert stat.S_IMODE((tmp_cache_dir / "sub").stat().st_mode) == 0o700
    absolute = tmp_path / "elsewhere"
    Function("ucache", "u", folder=absolute)
    assert (absolute / "u.tcache").exists()
    with pytest.raises(errors.ConfigurationError, match="folder_name"):
        Function("bcache", "f", folder="sub", path=tmp_path / "x.tcache")


def test_fcache_file_and_compression(tmp_cache_dir: pathlib.Path) -> None:
    f = Function("fcache", "matrix")
    value = "x" * 100_000
    compute_once(f, (1,), value)
    assert (tmp_cache_dir / "matrix.fcache").exists()
    assert Function("fcache", "matrix").lookup((1,)) == (True, value)
    # LZ4 in the decorator: the file holds far less than the value.
    assert (tmp_cache_dir / "matrix.fcache").stat().st_blocks * 512 < 4 << 20


def test_option_errors_name_the_option(tmp_cache_dir: pathlib.Path) -> None:
    with pytest.raises(errors.ConfigurationError, match="kind"):
        Function("zcache", "f")
    with pytest.raises(errors.ConfigurationError, match="'name' is required"):
        Function("bcache", "")
    with pytest.raises(errors.ConfigurationError, match="maxsize"):
        Function("bcache", "f", maxsize=10)
    with pytest.raises(errors.ConfigurationError, match="maxsize"):
        Function("ucache", "f", maxsize=0)
    with pytest.raises(errors.ConfigurationError, match="remote"):
        Function("ucache", "f", remote="redis://127.0.0.1:1/0")
    with pytest.raises(errors.ConfigurationError, match="remote"):
        Function("bcache", "f", remote="http://example")
    with pytest.raises(errors.ConfigurationError, match="backend"):
        Function("ucache", "f", backend="nosuch")
    with pytest.raises(errors.ConfigurationError, match="ttl"):
        Function("bcache", "f", ttl=-1)
    with pytest.raises(errors.ConfigurationError, match="lease_timeout"):
        Function("bcache", "f", lease_timeout=0)
    with pytest.raises(errors.ConfigurationError, match="capacity_bytes"):
        Function("bcache", "f", capacity_bytes=10)
    with pytest.raises(errors.ConfigurationError, match="capacity_bytes"):
        Function("acache", "f", capacity_bytes=1 << 30)
    with pytest.raises(errors.ConfigurationError, match="arg_specs"):
        Function("bcache", "f", arg_specs=[("int64",)])


def test_ucache_falls_back_to_memory_warning_once(tmp_path: pathlib.Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir(mode=0o700)
    bad = blocked / "u.tcache"
    bad.write_bytes(b"not a cache file" * 100)
    bad.chmod(0o600)
    lines: list[str] = []
    u = Function("ucache", "u", path=bad, logger=lines.append)
    assert u.backend_name == "memory"
    assert u.info()["fallbacks"] == 1
    assert len(lines) == 1 and "falling back to memory" in lines[0]
    assert compute_once(u, (1,), "v") == "v" and u.lookup((1,)) == (True, "v")
    # bcache does not fall back: it raises what opening the file raises.
    with pytest.raises(errors.NotACacheFileError):
        Function("bcache", "b", path=bad)


def test_ucache_memory_and_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Function("ucache", "m", backend="memory").backend_name == "memory"
    assert Function("ucache", "f").backend_name == "tiered(file>memory)"
    monkeypatch.setenv("TCACHE_BACKEND", "memory")
    assert Function("ucache", "e").backend_name == "memory"
    assert Function("acache", "").backend_name == "memory"  # a nameless acache keeps to memory


def test_disabled_calls_through(monkeypatch: pytest.MonkeyPatch) -> None:
    f = Function("bcache", "f")
    token = push_config(disable=True)
    try:
        found, lease = f.lookup((1,))  # made earlier, disabled while the scope lives
        assert not found and not lease.held
        f.store(lease, "not kept")
    finally:
        pop_config(token)
    found, lease = f.lookup((1,))
    assert not found and lease.held
    f.abandon(lease)
    monkeypatch.setenv("TCACHE_DISABLE", "1")
    d = Function("bcache", "d")
    assert d.disabled and d.backend_name == "memory"


def test_ttl_and_default_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    f = Function("bcache", "t", ttl=0.001)
    compute_once(f, (1,), "v")
    wait_until(lambda: not f.lookup((1,))[0], "a 1 ms TTL's expiry")
    monkeypatch.setenv("TCACHE_DEFAULT_TTL", "1ms")
    g = Function("bcache", "g")
    compute_once(g, (1,), "v")
    wait_until(lambda: not g.lookup((1,))[0], "TCACHE_DEFAULT_TTL=1ms's expiry")


def test_single_flight_across_threads(tmp_cache_dir: pathlib.Path) -> None:
    f = Function("bcache", "sf")
    _, lease = f.lookup((7,))  # this thread computes
    results: list[tuple] = []
    started = threading.Barrier(5)

    def waiter() -> None:
        started.wait()
        results.append(f.lookup((7,)))  # waits for our value, GIL released

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    f.store(lease, "once")
    for t in threads:
        t.join()
    assert results == [(True, "once")] * 4


def test_acache_lookup_nowait(tmp_cache_dir: pathlib.Path) -> None:
    a = Function("acache", "a", backend="memory")
    assert a.lookup_nowait((1,)) == (False, None)  # the lease is being taken on the pool
    while True:
        found, lease = a.lookup_nowait((1,))
        if lease is not None:
            break
        assert not found
    assert lease.held
    # While we hold the lease, others are told to look again, never blocked.
    b = Function("acache", "a", backend="memory")
    a.store(lease, "v")
    assert a.lookup_nowait((1,)) == (True, "v")
    assert b.lookup_nowait((2,))[1] is None


def lease_within_minutes(take) -> object:
    """Calls take() on a thread until it returns something else than None
    (a lease, or lookup's answer), and returns that. Minutes without one
    fail: a lease nobody ends makes the wait last its lease_timeout (an hour
    in these tests)."""
    got: list = []
    done = threading.Event()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            lease = take()
            if lease is not None:
                got.append(lease)
                done.set()
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=300)  # a backstop against a hang, not a measure of speed
    stop.set()
    assert done.is_set(), "the next call did not get the lease: the abandoned one still stands"
    return got[0]


def nowait_lease(f: Function, args: tuple):
    found, lease = f.lookup_nowait(args)
    assert not found
    return lease


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_acache_abandon_on_another_thread_passes_the_lease_on(backend, request) -> None:
    # lookup_nowait takes the lease on tcache's pool; this thread abandons it.
    url = "memory" if backend == "memory" else request.getfixturevalue("redis_server").url
    a = Function("acache", "handed", backend=url, lease_timeout=3600.0)
    lease = lease_within_minutes(lambda: nowait_lease(a, (1,)))
    assert lease.held
    a.abandon(lease)
    assert not lease.held
    # The next caller (another thread: never one that took the lease before)
    # takes the lease at once; its value, stored from here, is every one's.
    found, again = lease_within_minutes(lambda: a.lookup((1,)))
    assert not found and again.held
    a.store(again, "v")
    assert a.lookup_nowait((1,)) == (True, "v")


def test_acache_lease_held_by_one_caller_is_not_another_callers(tmp_cache_dir) -> None:
    # While one caller holds a lease from lookup_nowait, another lookup_nowait
    # of the key waits on the pool (even on the pool thread that took the
    # first lease) and gets the holder's value, never a second lease.
    a = Function("acache", "single", backend="memory", lease_timeout=3600.0)
    lease = lease_within_minutes(lambda: nowait_lease(a, (1,)))
    assert a.lookup_nowait((1,)) == (False, None)  # waiting on the pool
    a.store(lease, "v")
    assert lease_within_minutes(lambda: a.lookup_nowait((1,))[1] or None) == "v"


def test_lookup_lease_completed_on_another_thread(tmp_cache_dir: pathlib.Path) -> None:
    f = Function("ucache", "handed", backend="memory", lease_timeout=3600.0)
    taken: list = []
    have_lease = threading.Event()
    finish = threading.Event()

    def holder() -> None:  # stays alive, so no later thread is taken for it
        taken.append(f.lookup((1,)))
        have_lease.set()
        finish.wait()

    t = threading.Thread(target=holder)
    t.start()
    try:
        have_lease.wait()
        found, lease = taken[0]
        assert not found and lease.held
        f.abandon(lease)  # here, not on the thread that took it
        found, again = lease_within_minutes(lambda: f.lookup((1,)))
        assert not found and again.held
        f.store(again, "v")
        assert f.lookup((1,)) == (True, "v")
    finally:
        finish.set()
        t.join()


def test_forked_child_resolves_again(tmp_cache_dir: pathlib.Path) -> None:
    f = Function("bcache", "fk")
    compute_once(f, (1,), "parent")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            ok = f.lookup((1,)) == (True, "parent")
            compute_once(f, (2,), "child")
            os.write(w, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(w)
    answer = os.read(r, 2)
    os.close(r)
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert f.lookup((2,)) == (True, "child")


def test_allow_pickle_default(redis_server) -> None:
    assert Function("bcache", "p").allow_pickle is True  # the user's own file
    assert Function("ucache", "m", backend="memory").allow_pickle is True
    r = Function("ucache", "r", backend=redis_server.url)
    assert "redis" in r.backend_name and r.allow_pickle is False
    b = Function("bcache", "rb", remote=redis_server.url)
    assert "redis" in b.backend_name and b.allow_pickle is False
    assert Function("bcache", "x", allow_pickle=False).allow_pickle is False


def test_ucache_on_redis_shares_between_functions(redis_server, tmp_path) -> None:
    a = Function("ucache", "shared", backend=redis_server.url, path=tmp_path / "a.tcache")
    compute_once(a, ("k",), "v")
    b = Function("ucache", "shared", backend=redis_server.url, path=tmp_path / "b.tcache")
    assert b.lookup(("k",)) == (True, "v")  # from Redis: b's own file is new


def test_config_scopes(tmp_path: pathlib.Path) -> None:
    before = current_config()
    token = push_config(dir=tmp_path / "scoped", default_ttl=2.5, backend="memory")
    try:
        c = current_config()
        assert c["dir"] == str(tmp_path / "scoped") and c["default_ttl"] == 2.5
        assert c["backend"] == "memory"
        inner = push_config(disable=True)
        assert current_config()["disable"] is True
        pop_config(inner)
        assert current_config()["disable"] is False
    finally:
        pop_config(token)
    assert current_config() == before
    with pytest.raises(KeyError):
        pop_config(token)


def test_cpp_writes_python_hits(tmp_cache_dir: pathlib.Path, cpp_peer: str) -> None:
    p = tmp_cache_dir / "price.tcache"
    out = json.loads(subprocess.check_output([cpp_peer, str(p), "price", "AAPL", "3"]))
    assert out == {"result": 4.0, "computed": True}
    f = Function("bcache", "price", "1", path=p, arg_specs=[("string",), ("int64",)],
                 result_spec=("double",))
    assert f.lookup(("AAPL", 3)) == (True, 4.0)


def test_python_writes_cpp_hits(tmp_cache_dir: pathlib.Path, cpp_peer: str) -> None:
    p = tmp_cache_dir / "price.tcache"
    f = Function("bcache", "price", "1", path=p, arg_specs=[("string",), ("int64",)],
                 result_spec=("double",))
    compute_once(f, ("MSFT", 10), 99.5)
    out = json.loads(subprocess.check_output([cpp_peer, str(p), "price", "MSFT", "10"]))
    assert out == {"result": 99.5, "computed": False}


def test_python_waits_for_cpp_holder(tmp_cache_dir: pathlib.Path, cpp_peer: str) -> None:
    p = tmp_cache_dir / "price.tcache"
    f = Function("bcache", "price", "1", path=p, arg_specs=[("string",), ("int64",)],
                 result_spec=("double",))
    peer = subprocess.Popen([cpp_peer, str(p), "price-held", "IBM", "4"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert json.loads(peer.stdout.readline()) == {"computing": True}  # C++ holds the lease
    got: list[tuple] = []
    t = threading.Thread(target=lambda: got.append(f.lookup(("IBM", 4))))
    t.start()
    peer.stdin.write(b"go\n")
    peer.stdin.flush()
    assert json.loads(peer.stdout.readline()) == {"result": 4.75, "computed": True}
    peer.wait()
    t.join()
    # Whether the lookup waited for C++ or came after it, it is C++'s value.
    assert got == [(True, 4.75)]
