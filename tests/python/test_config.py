"""create_cache_config, config(...) scopes, env vars, get_cache_path, CacheContext."""

import os
import stat
import time

import pytest

import tcache


def test_create_cache_config_normalises_and_feeds_decorators():
    cfg = tcache.create_cache_config(maxsize=10, ttl=5, policy="lfu", version=3,
                                     preferred_engine="memory")
    assert cfg == {"maxsize": 10, "ttl": 5.0, "policy": "lfu", "version": "3",
                   "backend": "memory"}
    mem = tcache.create_cache_config(maxsize=10, ttl=5, policy="lfu")

    @tcache.mcache(**mem)
    def f(x):
        return x

    assert f(1) == 1 and f.cache_info()["policy"] == "lfu"


@pytest.mark.parametrize("options, option", [
    ({"maxsize": 0}, "maxsize"),
    ({"maxsize": 2.5}, "maxsize"),
    ({"ttl": -0.1}, "ttl"),
    ({"ttl": float("nan")}, "ttl"),
    ({"ttl": "60"}, "ttl"),
    ({"policy": "random"}, "policy"),
    ({"version": 1.0}, "version"),
    ({"folder_name": 3}, "folder_name"),
    ({"compress": "yes"}, "compress"),
    ({"serializer": "json"}, "serializer"),
    ({"lease_timeout": 0}, "lease_timeout"),
    ({"preferred_engine": "redis"}, "preferred_engine"),
    ({"preferred_engine": "memory", "backend": "file"}, "preferred_engine"),
    ({"key": 5}, "key"),
    ({"ignore": [1]}, "ignore"),
    ({"maxsizee": 3}, "maxsizee"),
    ({"capacity_bytes": 0}, "capacity_bytes"),
])
def test_create_cache_config_rejects_bad_options(options, option):
    with pytest.raises(tcache.ConfigurationError, match=option) as raised:
        tcache.create_cache_config(**options)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, tcache.CacheError)
    assert raised.value.code == "invalid_option"


def test_config_scope_sets_and_restores(tmp_path):
    outer = str(tmp_path / "outer")
    inner = str(tmp_path / "inner")
    with tcache.config(dir=outer, default_ttl=5.0, backend="memory") as cfg:
        assert (str(cfg["dir"]), cfg["default_ttl"], cfg["backend"]) == (outer, 5.0, "memory")
        with tcache.config(dir=inner) as nested:
            assert str(nested["dir"]) == inner
            assert nested["default_ttl"] == 5.0  # unset fields keep the outer value
            assert tcache.get_cache_path() == inner
        assert tcache.get_cache_path() == outer
    assert tcache.get_cache_path() != outer


def test_config_rejects_bad_values_before_changing_anything():
    with pytest.raises(tcache.ConfigurationError, match="default_ttl"):
        with tcache.config(default_ttl=-1):
            pass
    with pytest.raises(tcache.ConfigurationError, match="disable"):
        with tcache.config(disable="yes"):
            pass


def test_disable_scope_makes_earlier_wrappers_call_through(tmp_cache_dir):
    calls = []

    @tcache.mcache
    def m(x):
        calls.append(("m", x))
        return x

    with tcache.config(dir=str(tmp_cache_dir)):
        @tcache.bcache
        def b(x):
            calls.append(("b", x))
            return x

    m(1), b(1)
    with tcache.config(disable=True):
        m(1), b(1)
        with tcache.config(disable=False):
            m(1), b(1)  # the innermost scope that sets disable wins
    m(1), b(1)
    assert calls == [("m", 1), ("b", 1), ("m", 1), ("b", 1)]


def test_wrapper_made_while_disabled_calls_through_for_good(tmp_cache_dir):
    calls = []
    with tcache.config(dir=str(tmp_cache_dir), disable=True):
        @tcache.bcache
        def b(x):
            calls.append(x)
            return x

    b(1), b(1)
    assert calls == [1, 1]
    assert b.cache_info().currsize == 0


def test_env_vars(monkeypatch, tmp_path):
    monkeypatch.setenv("TCACHE_DIR", str(tmp_path / "envdir"))
    monkeypatch.setenv("TCACHE_DEFAULT_TTL", "90s")
    monkeypatch.setenv("TCACHE_BACKEND", "memory")

    @tcache.mcache
    def m(x):
        return x

    @tcache.ucache(name="env.u")
    def u(x):
        return x

    u(1)
    assert m.cache_info()["ttl"] == 90.0
    assert u.cache_info()["backend"] == "memory"
    assert tcache.get_cache_path() == str(tmp_path / "envdir")
    monkeypatch.setenv("TCACHE_DEFAULT_TTL", "ninety")
    with pytest.raises(tcache.ConfigurationError, match="TCACHE_DEFAULT_TTL"):
        tcache.mcache(lambda x: x)


def test_get_cache_path_creates_private_directories(tmp_path):
    with tcache.config(dir=str(tmp_path / "root")):
        root = tcache.get_cache_path()
        sub = tcache.get_cache_path("prices")
        absolute = tcache.get_cache_path(str(tmp_path / "abs"))
    assert root == str(tmp_path / "root")
    assert sub == os.path.join(root, "prices")
    assert absolute == str(tmp_path / "abs")
    for path in (root, sub, absolute):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_folder_name_selects_the_decorators_directory(tmp_path):
    with tcache.config(dir=str(tmp_path)):
        @tcache.bcache(name="folder.f", folder_name="sub")
        def f(x):
            return x

        f(1)
    assert any(name.endswith(".tcache") for name in os.listdir(tmp_path / "sub"))


def test_cache_context_memory():
    with tcache.CacheContext(engine_name="memory", maxsize=2) as c:
        c.set("k", [1, 2])
        c.set(("t", 1), {"v": 1})
        assert c.get("k") == [1, 2]
        c.set("third", 3)  # evicts the least recently used: "k" was read after ("t", 1)
        assert len(c) == 2
        assert ("t", 1) not in c and "k" in c
        assert c.get("missing", "default") == "default"
        assert c.delete("k") is True and c.delete("k") is False
    assert len(c) == 0


def test_cache_context_entry_ttl():
    with tcache.CacheContext(maxsize=10) as c:
        c.set("short", 1, ttl=0.0001)
        c.set("long", 2, ttl=3600)
        deadline = time.monotonic() + 0.001
        while time.monotonic() <= deadline:
            time.sleep(0.001)
        assert c.get("short") is None
        assert c.get("long") == 2


def test_cache_context_file(tmp_path):
    path = str(tmp_path / "ctx.tcache")
    with tcache.CacheContext(engine_name="file", path=path) as c:
        c.set("k", {"a": [1, 2.5, None]})
        c.set(("tuple", 1), b"bytes")
    with tcache.CacheContext(engine_name="file", path=path) as c:
        assert c.get("k") == {"a": [1, 2.5, None]}
        assert c.get(("tuple", 1)) == b"bytes"
        assert len(c) == 2
        assert c.delete("k") and "k" not in c


def test_cache_context_rejects_unknown_engine():
    with pytest.raises(tcache.ConfigurationError, match="engine_name"):
        tcache.CacheContext(engine_name="sqlite")
