"""_tcache.Store (tcache.Store): a cache file with Python's mapping manners."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import signal
import stat
import threading

import pytest

from tcache import errors
from tcache._tcache import Store, compact
from waiting import wait_until

MiB = 1 << 20


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Store:
    s = Store(tmp_path / "c.tcache", capacity_bytes=8 * MiB)
    yield s
    s.close()


def test_mapping_manners(store: Store) -> None:
    store["a"] = b"1"
    store[b"b"] = b"2"
    assert store["a"] == b"1" and store.get("b") == b"2"
    assert "a" in store and b"a" in store and "zz" not in store and 3 not in store
    assert len(store) == 2
    assert sorted(store.keys()) == [b"a", b"b"] and sorted(store) == [b"a", b"b"]
    del store["a"]
    assert "a" not in store and len(store) == 1
    with pytest.raises(KeyError):
        store["a"]
    with pytest.raises(KeyError):
        del store["a"]
    assert store.get("a") is None and store.get("a", b"dflt") == b"dflt"
    assert store.erase("b") is True and store.erase("b") is False


def test_str_key_is_its_utf8(store: Store) -> None:
    store["clé"] = b"v"
    assert store["clé".encode()] == b"v"
    assert store.keys() == ["clé".encode()]


def test_keys_must_be_str_or_bytes(store: Store) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        store.get(1)
    with pytest.raises(TypeError, match="str or bytes"):
        store[1.5] = b"v"


def test_values_are_bytes_like(store: Store) -> None:
    store["ba"] = bytearray(b"abc")
    store["mv"] = memoryview(b"xyz123")[1:4]
    assert store["ba"] == b"abc" and store["mv"] == b"yz1"
    with pytest.raises(TypeError, match="bytes"):
        store["s"] = "not bytes"
    assert store.get("empty") is None
    store["empty"] = b""
    assert store.get("empty") == b""


def test_large_value_in_a_blob_file(store: Store) -> None:
    big = os.urandom(3 * MiB)
    store.put("big", big)
    assert store["big"] == big
    assert store.stats()["blob_bytes"] >= len(big) // 2


def test_get_many(store: Store) -> None:
    store["a"], store["c"] = b"1", b"3"
    assert store.get_many(["a", b"b", "c"]) == [b"1", None, b"3"]
    assert store.get_many([]) == []
    with pytest.raises(TypeError):
        store.get_many(["a", 2])


def test_ttl(store: Store) -> None:
    store.put("long", b"v", ttl=3600)
    store.put("short", b"v", ttl=0.001)
    wait_until(lambda: store.get("short") is None, "the 1 ms entry's expiry")
    assert store["long"] == b"v"
    with pytest.raises(errors.ConfigurationError, match="ttl"):
        store.put("k", b"v", ttl=-1)
    with pytest.raises(errors.ConfigurationError, match="ttl"):
        store.put("k", b"v", ttl=float("nan"))


def test_default_ttl_option(tmp_path: pathlib.Path) -> None:
    s = Store(tmp_path / "c.tcache", capacity_bytes=MiB, default_ttl=0.001)
    s["k"] = b"v"
    wait_until(lambda: s.get("k") is None, "default_ttl's expiry")


def test_new_file_is_owner_only(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.tcache"
    Store(p, capacity_bytes=MiB).close()
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    q = tmp_path / "shared.tcache"
    Store(q, capacity_bytes=MiB, mode=0o640).close()
    assert stat.S_IMODE(q.stat().st_mode) == 0o640


def test_options_are_checked(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.ConfigurationError, match="capacity_bytes"):
        Store(tmp_path / "a", capacity_bytes=-1)
    with pytest.raises(errors.ConfigurationError, match="page_bytes"):
        Store(tmp_path / "b", page_bytes=12345)
    with pytest.raises(TypeError):
        Store(tmp_path / "c", no_such_option=1)
    with pytest.raises(errors.ConfigurationError, match="logger"):
        Store(tmp_path / "d", logger=42)


def test_stats_verify_repair(store: Store) -> None:
    for i in range(100):
        store[f"k{i}"] = b"v" * i
    store.get("k1")
    store.get("absent")
    st = store.stats()
    assert st["entries"] == 100 and st["puts"] == 100
    assert st["hits"] >= 1 and st["misses"] >= 1 and st["capacity_bytes"] == 8 * MiB
    report = store.verify()
    assert report["clean"] is True and report["entries"] >= 100 and report["problems"] == []
    assert store.repair()["clean"] is True


def test_clear_prefix_purge(store: Store) -> None:
    for i in range(10):
        store[f"a:{i}"] = b"v"
        store[f"b:{i}"] = b"v"
    assert store.count_prefix("a:") == 10
    assert store.erase_prefix("a:") == 10 and len(store) == 10
    assert store.keys("b:1") == [b"b:1"]
    store.put("gone", b"v", ttl=0.001)
    wait_until(lambda: store.get("gone") is None, "the entry's expiry")
    store.purge_expired()
    store.clear()
    assert len(store) == 0
    store.flush()


def test_compact_keeps_entries(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.tcache"
    s = Store(p, capacity_bytes=8 * MiB)
    for i in range(200):
        s[f"k{i}"] = os.urandom(200)
    for i in range(100):
        del s[f"k{i}"]
    phases: list[tuple[str, int, int]] = []
    result = compact(p, sync=False, progress=lambda *a: phases.append(a))
    assert result["entries"] == 100 and result["file_bytes_after"] > 0
    assert isinstance(result["writers_paused"], float)
    assert phases and {phase for phase, _, _ in phases} <= {
        "copying", "switching", "final_copy", "syncing"}
    assert all(done <= total for phase, done, total in phases if total)
    # The open store follows the new file.
    assert len(s) == 100 and "k150" in s and "k50" not in s
    with pytest.raises(errors.ConfigurationError, match="drain_timeout"):
        compact(p, drain_timeout=0)


def test_close_and_context_manager(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.tcache"
    with Store(p, capacity_bytes=MiB) as s:
        s["k"] = b"v"
        assert s.path == str(p) and not s.closed
    assert s.closed
    with pytest.raises(ValueError, match="closed"):
        s.get("k")
    with pytest.raises(ValueError, match="closed"):
        s["k"] = b"v"
    assert Store(p)["k"] == b"v"


def test_lease_wait_releases_the_gil(store: Store) -> None:
    assert store.get_or_lease("k", 60.0) is None  # this process holds the lease
    started = threading.Event()
    got: list[bytes | None] = []

    def waiter() -> None:
        started.set()
        got.append(store.get_or_lease("k", 60.0))  # waits for our value

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    # Runs only if the waiter does not hold the GIL while it waits.
    store.put("k", b"computed")
    t.join()
    assert got == [b"computed"]


def test_release_lease_lets_the_next_caller_compute(store: Store) -> None:
    assert store.get_or_lease("k", 60.0) is None
    store.release_lease("k")
    assert store.get_or_lease("k", 60.0) is None  # taken again, no wait
    store.release_lease("k")
    with pytest.raises(errors.ConfigurationError):
        store.get_or_lease("k", 0)


def _child_uses_inherited(store: Store, w: int) -> None:
    try:
        store["from-child"] = b"c"  # reopened in the child by itself
        ok = store["from-parent"] == b"p"
        os.write(w, b"ok" if ok else b"no")
    finally:
        os._exit(0)


def test_forked_child_reopens_by_itself(store: Store) -> None:
    store["from-parent"] = b"p"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child_uses_inherited(store, w)
    os.close(w)
    answer = os.read(r, 2)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert answer == b"ok" and os.waitstatus_to_exitcode(status) == 0
    assert store["from-child"] == b"c"
    store["after"] = b"a"  # the parent's store is unaffected
    assert store["after"] == b"a"


def _spawned(path: str) -> bytes:
    s = Store(path)
    s["spawned"] = b"s"
    return s["parent"]


def test_spawned_process_shares_the_file(store: Store) -> None:
    store["parent"] = b"p"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_spawned, (store.path,)) == b"p"
    assert store["spawned"] == b"s"


def test_killed_lease_holder_is_taken_over(store: Store) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            held = store.get_or_lease("k", 3600.0) is None
            os.write(w, b"held" if held else b"miss")
            signal.pause()
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 4) == b"held"
    os.close(r)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    # The holder is dead: its lease is taken over (no waiting for its hour).
    assert store.get_or_lease("k", 60.0) is None
    store.put("k", b"v")
    assert store["k"] == b"v"


def test_logger_gets_the_stores_diagnostics(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.tcache"
    pid = os.fork()
    if pid == 0:  # attaches, writes, and dies without detaching
        try:
            attached = Store(p, capacity_bytes=MiB)
            attached["k"] = b"v"
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    lines: list[str] = []
    s = Store(p, logger=lines.append)  # the next exclusive open reclaims
    assert s["k"] == b"v"
    assert any("reclaimed" in line and str(p) in line for line in lines), lines
