"""C++ and Python decorators share entries when their types map.

The C++ side is cpp_peer (tests/python/cpp_peer.cc): real C++ tcache::bcache
functions `price`, `summary` and `label`, version "1", on the file given. The
Python side is @tcache.bcache on functions of the same name, version and
annotated types; _cpp_types maps the annotations to C++ types, so keys and
values are exactly tcache::Codec's bytes.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Optional

import pytest

import tcache


def peer(cpp_peer: str, path: pathlib.Path, *args: str) -> dict:
    """One call of a C++ function: {"result": ..., "computed": bool}."""
    return json.loads(subprocess.check_output([cpp_peer, str(path), *args]))


@pytest.fixture
def cache_file(tmp_cache_dir: pathlib.Path) -> pathlib.Path:
    return tmp_cache_dir / "shared.tcache"


def make_price(path: pathlib.Path, calls: list, version=1):
    @tcache.bcache(name="price", version=version, path=str(path))
    def price(sym: str, day: int) -> float:
        calls.append((sym, day))
        return -1.0  # never C++'s value: a hit shows C++'s

    return price


def test_cpp_writes_python_hits(cpp_peer, cache_file):
    assert peer(cpp_peer, cache_file, "price", "AAPL", "3") == {"result": 4.0, "computed": True}
    calls = []
    price = make_price(cache_file, calls)
    assert price("AAPL", 3) == 4.0
    assert price(sym="AAPL", day=3) == 4.0  # bound to the same key
    assert price("AAPL", day=3) == 4.0
    assert calls == []
    assert price.cache_info()["hits"] == 3


def test_python_writes_cpp_hits(cpp_peer, cache_file):
    calls = []
    price = make_price(cache_file, calls)
    assert price("MSFT", 10) == -1.0
    assert calls == [("MSFT", 10)]
    assert peer(cpp_peer, cache_file, "price", "MSFT", "10") == {"result": -1.0, "computed": False}


def test_version_as_int_or_string_is_the_same_and_another_version_is_not(cpp_peer, cache_file):
    peer(cpp_peer, cache_file, "price", "IBM", "1")
    calls = []
    assert make_price(cache_file, calls, version="1")("IBM", 1) == 1.75
    assert make_price(cache_file, calls, version=2)("IBM", 1) == -1.0
    assert calls == [("IBM", 1)]


def test_containers_both_ways(cpp_peer, cache_file):
    calls = []

    @tcache.bcache(name="summary", version=1, path=str(cache_file))
    def summary(xs: list[int], twice: bool = False) -> dict[str, int]:
        calls.append(xs)
        return {"sum": sum(xs) * (2 if twice else 1), "n": len(xs), "python": 1}

    # C++ writes; Python hits, with the default argument bound
    assert peer(cpp_peer, cache_file, "summary", "1,2,3", "0")["result"] == {"n": 3, "sum": 6}
    assert summary([1, 2, 3]) == {"n": 3, "sum": 6}
    assert summary([1, 2, 3], twice=False) == {"n": 3, "sum": 6}
    assert calls == []
    # Python writes (a map in std::map order); C++ hits
    assert summary([5, -7], True) == {"sum": -4, "n": 2, "python": 1}
    assert calls == [[5, -7]]
    assert peer(cpp_peer, cache_file, "summary", "5,-7", "1") == {
        "result": {"n": 2, "python": 1, "sum": -4},
        "computed": False,
    }


def test_optional_tuple_and_bytes_both_ways(cpp_peer, cache_file):
    calls = []

    @tcache.bcache(name="label", version=1, path=str(cache_file))
    def label(n: Optional[int]) -> tuple[str, bytes]:
        calls.append(n)
        return ("py" if n is None else f"py{n}", b"\x00\xfe")

    assert peer(cpp_peer, cache_file, "label", "258")["result"] == ["n=258", [1, 2, 2]]
    assert peer(cpp_peer, cache_file, "label")["result"] == ["none", []]
    assert label(258) == ("n=258", b"\x01\x02\x02")
    assert label(None) == ("none", b"")
    assert calls == []
    assert label(7) == ("py7", b"\x00\xfe")
    assert peer(cpp_peer, cache_file, "label", "7") == {
        "result": ["py7", [0, 254]],
        "computed": False,
    }


def test_unmapped_annotations_use_the_python_codec_and_do_not_share(cpp_peer, cache_file):
    calls = []

    @tcache.bcache(name="price", version=1, path=str(cache_file))
    def price(sym, day: int) -> float:  # sym has no annotation: Python's codec
        calls.append(sym)
        return -1.0

    peer(cpp_peer, cache_file, "price", "AAPL", "3")
    assert price("AAPL", 3) == -1.0  # C++'s entry is another key
    assert calls == ["AAPL"]
    assert price("DELL", 2) == -1.0
    assert peer(cpp_peer, cache_file, "price", "DELL", "2") == {"result": 3.0, "computed": True}


def test_another_result_type_is_a_miss_never_garbage(cpp_peer, cache_file):
    calls = []

    @tcache.bcache(name="price", version=1, path=str(cache_file))
    def price(sym: str, day: int) -> int:  # C++ returns double: same key, other fingerprint
        calls.append(sym)
        return 12

    peer(cpp_peer, cache_file, "price", "HP", "6")
    assert price("HP", 6) == 12
    assert calls == ["HP"]
    # and C++ does not read Python's int64 as a double
    assert peer(cpp_peer, cache_file, "price", "HP", "6") == {"result": 6.5, "computed": True}
