"""The Redis tier with a real redis-server: ucache's redis backend, bcache's
remote, sharing between two local files through Redis, a server that is
down, and no pickle over Redis."""

import logging
import socket

import pytest

import tcache
from tcache import _tcache

pytestmark = pytest.mark.skipif(
    not _tcache.WITH_REDIS, reason="this build has no Redis tier (TCACHE_WITH_REDIS=OFF)")


@pytest.fixture(autouse=True)
def cache_dir(tmp_cache_dir):
    with tcache.config(dir=str(tmp_cache_dir)):
        yield tmp_cache_dir


def two_machines(deco, option, uri, tmp_cache_dir, name):
    """Two wrappers of one function on different local files, sharing Redis."""
    calls = []

    def price(sym, day):
        calls.append((sym, day))
        return {"sym": sym, "day": day, "px": 1.5}

    a = deco(name=name, path=str(tmp_cache_dir / "a.tcache"), **{option: uri})(price)
    b = deco(name=name, path=str(tmp_cache_dir / "b.tcache"), **{option: uri})(price)
    return a, b, calls


def test_ucache_redis_backend_shares_between_files(redis_uri, tmp_cache_dir):
    a, b, calls = two_machines(tcache.ucache, "backend", redis_uri, tmp_cache_dir, "redis.u")
    assert a("AAPL", 3) == {"sym": "AAPL", "day": 3, "px": 1.5}
    assert b("AAPL", 3) == {"sym": "AAPL", "day": 3, "px": 1.5}
    assert calls == [("AAPL", 3)]
    assert "redis" in a.cache_info()["backend"]


def test_bcache_remote_shares_between_files(redis_uri, tmp_cache_dir):
    a, b, calls = two_machines(tcache.bcache, "remote", redis_uri, tmp_cache_dir, "redis.b")
    a("MSFT", 1)
    a("MSFT", 1)
    b("MSFT", 1)
    assert calls == [("MSFT", 1)]
    assert b.cache_info()["hits"] == 1


def test_redis_down_falls_back_and_warns_once(tmp_cache_dir, caplog):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    calls = []

    @tcache.ucache(name="redis.down", backend=f"redis://127.0.0.1:{port}/0")
    def f(x):
        calls.append(x)
        return x

    with caplog.at_level(logging.WARNING, logger="tcache"):
        assert [f(1), f(1), f(2), f(2)] == [1, 1, 2, 2]
    assert calls == [1, 2]  # the file tier answered
    info = f.cache_info()
    assert info["errors"] >= 1
    warnings = [r for r in caplog.records if r.name == "tcache"]
    assert len(warnings) >= 1
    assert len({r.getMessage() for r in warnings}) == len(warnings)  # once per cause


class Opaque:
    def __init__(self, v):
        self.v = v


def test_no_pickle_over_redis(redis_uri):
    @tcache.ucache(name="redis.opaque", backend=redis_uri)
    def make(v):
        return Opaque(v)

    with pytest.raises(TypeError, match="serializer="):
        make(1)


def test_bad_redis_uri_is_a_configuration_error():
    with pytest.raises(tcache.ConfigurationError, match="remote"):
        tcache.bcache(name="redis.bad", remote="http://example")(lambda x: x)


@pytest.fixture
def redis_uri(redis_server):
    """The URI of conftest's redis-server."""
    return redis_server.url
