#!/usr/bin/python3
"""tcache's Python speed against its peers, all measured in this one run.

    /usr/bin/python3 bench/python/bench.py [--build DIR] [--seconds S]

Prints one Markdown table (the README's): a memoized hit of mcache against
functools.lru_cache and cachetools (cached(LRUCache)); a memoized hit of
bcache against diskcache's memoize and joblib.Memory; Store.get of a 100 B
value against diskcache.Cache.get, Python lmdb and a dict. Every peer runs
in this process right after tcache, on the same machine, so the ratios
(peer time / tcache time) compare like with like; the CPU is printed with
them. The issue's targets are checked and said met or missed (the exit
status stays 0: speed is reported, not asserted).

Each row is the best of --repeat timings of a loop long enough to take
about --seconds / --repeat (the fastest repeat is the least disturbed).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_ns(call, seconds: float, repeat: int) -> float:
    """Nanoseconds per call: the best of `repeat` loops of about seconds/repeat each."""
    number, elapsed = 1, 0.0
    while elapsed < seconds / repeat / 10:  # calibrate to ~1/10 of a repeat
        number *= 10
        elapsed = timeit.timeit(call, number=number)
    number = max(1, int(number * (seconds / repeat) / max(elapsed * 10, 1e-9) * 10))
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e9


def memo_rows(args, tmp: str, tcache):
    import cachetools
    import diskcache
    import joblib

    def body(x):
        return x * 2

    m = tcache.mcache(maxsize=4096)(body)
    lru = functools.lru_cache(maxsize=4096)(body)
    ct = cachetools.cached(cachetools.LRUCache(maxsize=4096))(body)
    with tcache.config(dir=os.path.join(tmp, "tcache")):
        b = tcache.bcache(name="bench.body")(body)
    dc_cache = diskcache.Cache(os.path.join(tmp, "diskcache-memo"))
    dc = dc_cache.memoize()(body)
    jm = joblib.Memory(os.path.join(tmp, "joblib"), verbose=0).cache(body)
    for f in (m, lru, ct, b, dc, jm):
        f(7)  # the measured calls are hits
    t = functools.partial(best_ns, seconds=args.seconds, repeat=args.repeat)
    m_ns, b_ns = t(lambda: m(7)), t(lambda: b(7))
    rows = [
        ("mcache hit, f(int)", m_ns, "functools.lru_cache", t(lambda: lru(7)), None),
        ("mcache hit, f(int)", m_ns, "cachetools cached(LRUCache)", t(lambda: ct(7)), 1.0),
        ("bcache hit, f(int)", b_ns, "diskcache memoize", t(lambda: dc(7)), 10.0),
        ("bcache hit, f(int)", b_ns, "joblib.Memory", t(lambda: jm(7)), None),
    ]
    dc_cache.close()
    return rows


def store_rows(args, tmp: str, tcache):
    import diskcache
    import lmdb

    value = os.urandom(100)
    key = "bench-key-0001"
    store = tcache.Store(os.path.join(tmp, "store.tcache"), capacity_bytes=64 << 20)
    store[key] = value
    dc = diskcache.Cache(os.path.join(tmp, "diskcache-store"))
    dc[key] = value
    env = lmdb.open(os.path.join(tmp, "lmdb"), map_size=64 << 20)
    with env.begin(write=True) as txn:
        txn.put(key.encode(), value)
    bkey = key.encode()

    def lmdb_get():
        with env.begin(buffers=False) as txn:
            return txn.get(bkey)

    d = {key: value}
    assert store.get(key) == dc.get(key) == lmdb_get() == d.get(key) == value
    t = functools.partial(best_ns, seconds=args.seconds, repeat=args.repeat)
    s_ns = t(lambda: store.get(key))
    rows = [
        ("Store.get, 100 B", s_ns, "diskcache.Cache.get", t(lambda: dc.get(key)), 5.0),
        ("Store.get, 100 B", s_ns, "lmdb (python3-lmdb) get", t(lmdb_get), 1.0),
        ("Store.get, 100 B", s_ns, "dict.get", t(lambda: d.get(key)), None),
    ]
    store.close()
    dc.close()
    env.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"),
                        help="the build tree whose python/ holds tcache (default: build/)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per row (default 1)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per row (default 5)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(args.build, "python"))
    import tcache

    print(f"CPU: {cpu_name()}; Python {platform.python_version()} ({sys.executable}); "
          f"tcache from {os.path.dirname(tcache.__file__)}")
    with tempfile.TemporaryDirectory(prefix="tcache-pybench.") as tmp:
        rows = memo_rows(args, tmp, tcache) + store_rows(args, tmp, tcache)
    print()
    print("| operation | tcache | peer | peer's time | peer / tcache | target |")
    print("|---|---:|---|---:|---:|---|")
    missed = 0
    for op, ours, peer, theirs, target in rows:
        ratio = theirs / ours
        verdict = ""
        if target is not None:
            met = ratio >= target if target > 1 else ratio > target
            missed += not met
            verdict = f"{'>=' if target > 1 else '>'} {target:g}x: {'met' if met else 'MISSED'}"
        print(f"| {op} | {ours:,.0f} ns | {peer} | {theirs:,.0f} ns | {ratio:.2f}x | "
              f"{verdict} |")
    print()
    print(f"targets: {'all met' if not missed else f'{missed} missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
