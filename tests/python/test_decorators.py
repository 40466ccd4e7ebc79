"""What every decorator shares: bare and called use, methods, static and class
methods, names, versions, key= and ignore=, binding, signatures, stats."""

import dataclasses
import inspect
import os
import subprocess
import sys
import textwrap
import typing

import pytest

import tcache

SYNC = [tcache.mcache, tcache.bcache, tcache.fcache, tcache.ucache]
PERSISTENT = [tcache.bcache, tcache.fcache, tcache.ucache]


@pytest.fixture(autouse=True)
def cache_dir(tmp_cache_dir):
    with tcache.config(dir=str(tmp_cache_dir)):
        yield tmp_cache_dir


def names(deco):
    return deco.__name__


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_bare_and_called(deco):
    calls = []

    @deco
    def bare(x):
        calls.append(("bare", x))
        return x + 1

    @deco()
    def called(x):
        calls.append(("called", x))
        return x + 2

    assert [bare(1), bare(1), called(1), called(1)] == [2, 2, 3, 3]
    assert calls == [("bare", 1), ("called", 1)]


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_wraps_keeps_name_doc_and_signature(deco):
    def price(sym: str, day: int = 3) -> float:
        """The price."""
        return 1.0

    wrapped = deco(price)
    assert wrapped.__name__ == "price"
    assert wrapped.__doc__ == "The price."
    assert inspect.signature(wrapped) == inspect.signature(price)
    assert wrapped.__wrapped__ is price


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_defaults_keywords_and_positional_fast_path_are_one_key(deco):
    calls = []

    @deco
    def f(a, b=2, *, c=3):
        calls.append((a, b, c))
        return a + b + c

    assert f(1) == f(1, 2) == f(1, b=2) == f(a=1, b=2, c=3) == f(1, 2, c=3) == 6
    assert calls == [(1, 2, 3)]
    assert f(1, 3) == 7 and len(calls) == 2


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_var_args_and_kwargs_are_keyed(deco):
    calls = []

    @deco
    def f(*args, **kwargs):
        calls.append(1)
        return len(args) + len(kwargs)

    assert f(1, 2, x=1, y=2) == f(1, 2, y=2, x=1) == 4
    assert f(1, 2, x=1) == 3
    assert len(calls) == 2


@dataclasses.dataclass(frozen=True)
class Pricer:
    currency: str

    def price(self, day):
        return (self.currency, day)


class Keyed:
    def __init__(self, k):
        self.k = k

    def __tcache_key__(self):
        return self.k


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_methods_key_on_self(deco):
    calls = []

    @deco
    def on_dataclass(p, day):
        calls.append(("dc", p.currency, day))
        return p.price(day)

    assert on_dataclass(Pricer("EUR"), 1) == ("EUR", 1)
    assert on_dataclass(Pricer("EUR"), 1) == ("EUR", 1)
    assert on_dataclass(Pricer("USD"), 1) == ("USD", 1)
    assert calls == [("dc", "EUR", 1), ("dc", "USD", 1)]


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_method_with_dataclass_namedtuple_and_tcache_key_self(deco):
    calls = []

    @dataclasses.dataclass(frozen=True)
    class Account:
        owner: str

        @deco
        def balance(self, day):
            calls.append((self.owner, day))
            return len(self.owner) + day

    class Named(Keyed):
        @deco
        def value(self, day):
            calls.append((self.k, day))
            return day

    class Point(typing.NamedTuple):
        x: int
        y: int

        @deco
        def norm1(self, scale):
            calls.append((self.x, self.y, scale))
            return (abs(self.x) + abs(self.y)) * scale

    assert Account("ann").balance(1) == Account("ann").balance(1) == 4
    assert Named("k1").value(2) == Named("k1").value(2) == 2
    assert Point(1, -2).norm1(2) == Point(1, -2).norm1(2) == 6
    assert calls == [("ann", 1), ("k1", 2), (1, -2, 2)]


@pytest.mark.parametrize("deco", PERSISTENT, ids=names)
def test_method_on_plain_object_says_key_or_ignore(deco):
    class Plain:
        @deco
        def f(self, x):
            return x

    with pytest.raises(TypeError, match=r"key=|ignore="):
        Plain().f(1)


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_ignore_self_and_key_function(deco):
    calls = []

    class Service:
        @deco(ignore=("self",))
        def fetch(self, url):
            calls.append(url)
            return url.upper()

        @deco(key=lambda self, url, logger=None: url)
        def fetch_logged(self, url, logger=None):
            calls.append(("logged", url))
            return url

    assert Service().fetch("a") == Service().fetch("a") == "A"
    assert Service().fetch_logged("b", logger=object()) == "b"
    assert Service().fetch_logged("b", logger=object()) == "b"
    assert calls == ["a", ("logged", "b")]


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_static_and_class_methods(deco):
    calls = []

    class Base:
        @deco
        @staticmethod
        def double(x):
            calls.append(("static", x))
            return 2 * x

        @deco
        @classmethod
        def tag(cls, x):
            calls.append((cls.__name__, x))
            return f"{cls.__name__}:{x}"

    class Child(Base):
        pass

    assert Base.double(2) == Base().double(2) == 4
    assert Base.tag(1) == Base.tag(1) == "Base:1"
    assert Child.tag(1) == "Child:1"  # the class is part of the key
    assert calls == [("static", 2), ("Base", 1), ("Child", 1)]


def test_ignore_naming_no_parameter_is_a_type_error():
    with pytest.raises(TypeError, match="not parameters"):
        @tcache.mcache(ignore=("nope",))
        def f(x):
            return x


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_name_defaults_to_module_qualname(deco):
    @deco
    def local_function(x):
        return x

    local_function(1)
    expected = f"{__name__}.test_name_defaults_to_module_qualname.<locals>.local_function"
    assert expected in tcache.get_stats()
    assert tcache.get_stats()[expected]["misses"] >= 1


def test_version_int_is_its_decimal_string(cache_dir):
    calls = []

    def g(x):
        calls.append(x)
        return x

    as_int = tcache.bcache(name="ver", version=7)(g)
    as_str = tcache.bcache(name="ver", version="7")(g)
    other = tcache.bcache(name="ver", version=8)(g)
    as_int(1)
    as_str(1)
    assert calls == [1]
    other(1)
    assert calls == [1, 1]


def test_bad_options_raise_configuration_error():
    for options in ({"maxsize": 0}, {"maxsize": -1}, {"ttl": -1}, {"policy": "mru"},
                    {"ttl": "5"}, {"maxsize": True}):
        with pytest.raises(tcache.ConfigurationError) as raised:
            tcache.mcache(**options)
        assert isinstance(raised.value, ValueError)
        assert raised.value.code == "invalid_option"
    with pytest.raises(tcache.ConfigurationError, match="version"):
        tcache.bcache(version=1.5)
    with pytest.raises(tcache.ConfigurationError, match="serializer"):
        tcache.bcache(serializer=42)
    with pytest.raises(tcache.ConfigurationError, match="lease_timeout"):
        tcache.bcache(lease_timeout=0)


def test_decorating_a_non_callable_says_how():
    with pytest.raises(TypeError, match="keywords"):
        tcache.mcache(5)


def test_get_stats_and_clear_cache_by_name():
    @tcache.mcache(name="stats.one")
    def one(x):
        return x

    @tcache.bcache(name="stats.two")
    def two(x):
        return x

    one(1), one(1), two(1), two(1)
    stats = tcache.get_stats()
    assert stats["stats.one"]["hits"] == 1 and stats["stats.one"]["backend"] == "memory"
    assert stats["stats.two"]["hits"] == 1 and stats["stats.two"]["misses"] == 1
    assert tcache.clear_cache("stats.one") == 1
    assert one.cache_info().currsize == 0
    assert two.cache_info().currsize == 1
    assert tcache.clear_cache() >= 1
    assert two.cache_info().currsize == 0


@pytest.mark.parametrize("deco", PERSISTENT, ids=names)
def test_persists_across_wrappers_of_one_name(deco):
    calls = []

    def g(x, y):
        calls.append((x, y))
        return [x, y]

    deco(name="shared.g")(g)(1, [2])
    assert deco(name="shared.g")(g)(1, [2]) == [1, [2]]
    assert calls == [(1, [2])]


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_invalidate_and_cache_clear(deco):
    calls = []

    @deco
    def f(x, y=1):
        calls.append(x)
        return x

    f(1), f(2)
    assert f.invalidate(1, y=1) is True
    assert f.invalidate(1) is False
    f(1), f(2)
    assert calls == [1, 2, 1]
    assert f.cache_clear() == 2
    assert f.cache_info().currsize == 0


def test_keys_do_not_depend_on_pythonhashseed(cache_dir):
    """Two interpreters with different hash seeds compute one key."""
    script = textwrap.dedent("""
        import sys, tcache
        calls = []
        @tcache.bcache(name="seeded")
        def f(s, fs, d):
            calls.append(1)
            return sorted(fs)
        f("text", frozenset({"a", "b", "c"}), {"x": 1, "y": {"z"}})
        print(len(calls))
    """)
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, TCACHE_DIR=str(cache_dir),
                   PYTHONPATH=os.pathsep.join(sys.path))
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, check=True)
        outputs.append(done.stdout.strip())
    assert outputs == ["1", "0"]


def test_fcache_numpy_arrays_round_trip():
    np = pytest.importorskip("numpy")
    calls = []

    @tcache.fcache(name="matrix", compress=True)
    def matrix(n: int):
        calls.append(n)
        return np.arange(n * n, dtype=np.float64).reshape(n, n)

    first = matrix(300)
    again = tcache.fcache(name="matrix", compress=True)(matrix.__wrapped__)(300)
    assert calls == [300]
    assert again.dtype == np.float64 and again.shape == (300, 300)
    assert np.array_equal(first, again)


def test_bcache_ttl_in_float_seconds(tmp_cache_dir):
    import time
    calls = []

    @tcache.bcache(name="ttl.b", ttl=0.05)
    def f(x):
        calls.append(x)
        return x

    f(1)
    deadline = time.monotonic() + 0.05
    while time.monotonic() <= deadline:
        time.sleep(0.01)
    f(1)
    assert calls == [1, 1]


class Opaque:
    def __init__(self, v):
        self.v = v


def test_values_pickle_only_where_allowed(tmp_cache_dir):
    @tcache.bcache(name="values.pickled", serializer="pickle")
    def pickled(v):
        return Opaque(v)

    @tcache.bcache(name="values.secure", secure=True)
    def secure(v):
        return Opaque(v)

    assert pickled(1).v == 1 and pickled(1).v == 1
    assert pickled.cache_info().hits == 1
    with pytest.raises(TypeError, match="serializer="):
        secure(1)
    with pytest.raises(tcache.ConfigurationError, match="secure"):
        tcache.bcache(name="values.both", serializer="pickle", secure=True)(lambda v: v)


def test_serializer_object_replaces_the_value_codec():
    import json

    class Json:
        dumps = staticmethod(lambda v: json.dumps(v).encode())
        loads = staticmethod(lambda b: json.loads(b.decode()))

    @tcache.bcache(name="values.json", serializer=Json())
    def f(x):
        return {"x": x, "list": [1, 2]}

    assert f(1) == f(1) == {"x": 1, "list": [1, 2]}
    assert f.cache_info().hits == 1


def test_ucache_falls_back_to_memory_on_an_unusable_directory(tmp_path, caplog):
    import logging
    blocker = tmp_path / "a-file"  # a directory below a file cannot be made, even by root
    blocker.write_text("")
    calls = []
    with caplog.at_level(logging.WARNING, logger="tcache"):
        with tcache.config(dir=str(blocker / "sub")):
            @tcache.ucache(name="fallback.u")
            def f(x):
                calls.append(x)
                return x

        f(1), f(1)
    assert calls == [1]
    assert f.cache_info()["backend"] == "memory"
    assert any("fallback.u" in r.getMessage() for r in caplog.records if r.name == "tcache")


def test_corrupt_file_bcache_raises_ucache_falls_back(tmp_cache_dir, caplog):
    import logging
    path = tmp_cache_dir / "corrupt.tcache"
    path.write_bytes(b"\x00" * 4096 + b"not a cache file" * 1000)
    path.chmod(0o600)
    with pytest.raises(tcache.CacheError) as raised:
        tcache.bcache(name="corrupt.b", path=str(path))(lambda x: x)
    assert raised.value.code in ("corrupt_file", "not_a_cache_file")
    with caplog.at_level(logging.WARNING, logger="tcache"):
        u = tcache.ucache(name="corrupt.u", path=str(path))(lambda x: x + 1)
        assert u(1) == 2 and u(1) == 2
    assert u.cache_info()["backend"] == "memory"
    assert u.cache_info().hits == 1


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_calls_that_do_not_fit_raise_type_error_as_the_function_would(deco):
    @deco
    def f(a, b=2, *, c=3):
        return a

    for args, kwargs, message in [((1, 2, 3), {}, "positional"), ((), {}, "'a'"),
                                  ((1,), {"a": 1}, "multiple values"),
                                  ((1,), {"z": 1}, "unexpected keyword")]:
        with pytest.raises(TypeError, match=message):
            f(*args, **kwargs)


@pytest.mark.parametrize("deco", SYNC, ids=names)
def test_ignore_leaves_keyword_only_arguments_out(deco):
    calls = []

    @deco(ignore="verbose")
    def f(a, b=2, *, verbose=False):
        calls.append((a, b, verbose))
        return a * b

    assert f(3, verbose=True) == f(3, 2, verbose=False) == f(a=3) == 6
    assert calls == [(3, 2, True)]


def test_ucache_memory_maxsize_and_bcache_capacity_bytes():
    @tcache.ucache(name="bounds.u", preferred_engine="memory", maxsize=10)
    def u(x):
        return x

    for i in range(30):
        u(i)
    assert u.cache_info().currsize == 10 and u.cache_info()["backend"] == "memory"
    with pytest.raises(tcache.ConfigurationError, match="capacity_bytes"):
        tcache.bcache(name="bounds.b", capacity_bytes=1000)(lambda x: x)
    with pytest.raises(tcache.ConfigurationError, match="capacity_bytes"):
        tcache.bcache(name="bounds.b", maxsize=10)(lambda x: x)  # a file is bounded by bytes
    b = tcache.bcache(name="bounds.b", capacity_bytes=2 << 20)(lambda x: x)
    assert b(1) == 1
