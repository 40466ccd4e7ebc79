"""mcache: policies, TTL, maxsize, typed keys, thread safety, exceptions."""

import threading
import time

import pytest

import tcache


def counted(fn_body=lambda *a, **k: a):
    """A function that records its calls, and the list they go to."""
    calls = []

    def fn(*args, **kwargs):
        calls.append((args, kwargs))
        return fn_body(*args, **kwargs)

    return fn, calls


def test_hit_after_miss_and_cache_info():
    calls = []

    @tcache.mcache
    def square(x):
        calls.append(x)
        return x * x

    assert square(4) == 16
    assert square(4) == 16
    assert calls == [4]
    info = square.cache_info()
    assert (info.hits, info.misses, info.currsize, info["backend"]) == (1, 1, 1, "memory")


def test_defaults_and_keywords_are_one_key():
    calls = []

    @tcache.mcache()
    def f(x, y=1):
        calls.append((x, y))
        return x + y

    assert f(5) == f(5, 1) == f(5, y=1) == f(x=5, y=1) == 6
    assert calls == [(5, 1)]


def test_keys_are_typed():
    calls = []

    @tcache.mcache
    def f(x):
        calls.append(x)
        return repr(x)

    assert [f(1), f(True), f(1.0), f("1"), f(b"1")] == ["1", "True", "1.0", "'1'", "b'1'"]
    assert len(calls) == 5
    assert f(True) == "True" and len(calls) == 5


def test_unhashable_and_nested_arguments():
    calls = []

    @tcache.mcache
    def total(xs, opts):
        calls.append(1)
        return sum(xs) + opts["k"][0]

    assert total([1, 2], {"k": [10], "z": 1}) == 13
    assert total([1, 2], {"z": 1, "k": [10]}) == 13  # dict order does not matter
    assert total((1, 2), {"k": [10], "z": 1}) == 13  # a tuple is another key than a list
    assert len(calls) == 2


@pytest.mark.parametrize("policy, evicted", [
    ("lru", 2),  # 1 was used after 2
    ("fifo", 1),  # 1 is the oldest although just used
    ("lfu", 2),  # 1 was used twice, 2 once
])
def test_policy_chooses_what_is_evicted(policy, evicted):
    calls = []

    @tcache.mcache(maxsize=2, policy=policy)
    def f(x):
        calls.append(x)
        return x

    f(1), f(2), f(1), f(3)
    calls.clear()
    kept = sorted({1, 2, 3} - {evicted})
    for x in kept:
        f(x)
    assert calls == []
    f(evicted)
    assert calls == [evicted]
    assert f.cache_info().currsize == 2


def test_ttl_in_float_seconds_expires():
    calls = []

    @tcache.mcache(ttl=0.05)
    def f(x):
        calls.append(x)
        return x

    start = time.monotonic()
    f(1)
    f(1)
    if time.monotonic() - start < 0.05:  # a slow machine may have let it expire
        assert calls == [1]
    deadline = time.monotonic() + 0.05
    while time.monotonic() <= deadline:
        time.sleep(0.01)
    f(1)
    assert calls == [1, 1]


@pytest.mark.parametrize("policy", ["lru", "lfu", "fifo"])
def test_maxsize_holds_under_every_policy(policy):
    @tcache.mcache(maxsize=10, policy=policy, ttl=100.0)
    def f(x):
        return x

    for i in range(100):
        f(i)
    assert f.cache_info().currsize == 10


def test_exceptions_propagate_and_are_not_cached():
    calls = []

    @tcache.mcache
    def fail(x):
        calls.append(x)
        raise ValueError(f"bad {x}")

    for _ in range(2):
        with pytest.raises(ValueError, match="bad 7"):
            fail(7)
    assert calls == [7, 7]
    assert fail.cache_info().currsize == 0


def test_recursion_through_the_wrapper():
    @tcache.mcache
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(80) == 23416728348467685
    assert fib.cache_info().misses == 81


def test_threads_share_one_cache_and_count_exactly():
    @tcache.mcache(maxsize=64)
    def f(x):
        return x * 3

    start = threading.Barrier(8)
    errors = []

    def worker(seed):
        start.wait()
        for i in range(5000):
            x = (i * 7 + seed) % 100  # more keys than maxsize: evictions race hits
            if f(x) != x * 3:
                errors.append(x)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = f.cache_info()
    assert errors == []
    assert info.hits + info.misses == 8 * 5000
    assert info.currsize <= 64


def test_disabled_by_env_calls_through(monkeypatch):
    monkeypatch.setenv("TCACHE_DISABLE", "1")
    calls = []

    @tcache.mcache
    def f(x):
        calls.append(x)
        return x

    monkeypatch.delenv("TCACHE_DISABLE")
    f(1), f(1)
    assert calls == [1, 1]  # made while disabled: calls through for good


def test_default_ttl_from_config(tmp_path):
    calls = []
    with tcache.config(default_ttl=60.0):
        @tcache.mcache
        def f(x):
            calls.append(x)
            return x

    assert f.cache_info()["ttl"] == 60.0
    f(1)
    f(1)
    assert calls == [1]
