"""``CacheContext``: a cache used by hand, as a context manager.

    with tcache.CacheContext(engine_name="memory", maxsize=100) as c:
        c.set("k", v); c.get("k"); c.delete("k"); "k" in c; len(c)

Engines: "memory" (in-process, values kept as they are; ``maxsize``,
``policy``, ``ttl`` as mcache's) and "file" (a ``Store`` at ``path``, or
``<cache dir>/<name>.tcache`` in ``folder_name``; keys by their canonical
encoding, values through the safe codec, pickle only with
``serializer="pickle"``). Leaving the ``with`` block drops a memory
context's entries and closes a file context's store (its entries stay in
the file).

Thread safety: a context may be used from any number of threads.
"""

from __future__ import annotations

import os
from typing import Any

from . import _options
from ._binding import memory_key
from ._config import get_cache_path
from ._memory import MISS, MemoryStore
from ._native import native

ENGINES = ("memory", "file")


class CacheContext:
    def __init__(self, engine_name: str = "memory", *, maxsize: int | None = 100,
                 ttl: float | None = None, policy: str = "lru", path: str | None = None,
                 folder_name: str | None = None, name: str = "context",
                 serializer: str | None = None) -> None:
        if engine_name not in ENGINES:
            raise _options.configuration_error(f"CacheContext: option 'engine_name' must be one "
                                               f"of {', '.join(ENGINES)}, not {engine_name!r}")
        options = _options.check("CacheContext", {
            "maxsize": maxsize, "ttl": ttl, "policy": policy, "path": path,
            "folder_name": folder_name, "name": name, "serializer": serializer})
        if options["serializer"] not in (None, "pickle"):
            raise _options.configuration_error("CacheContext: option 'serializer' must be None "
                                               "or 'pickle'")
        self.engine_name = engine_name
        self.ttl = options["ttl"]
        self._memory: MemoryStore | None = None
        self._store: Any = None
        self._pickle = options["serializer"] == "pickle"
        if engine_name == "memory":
            self._memory = MemoryStore(options["maxsize"], options["policy"], self.ttl,
                                       per_entry_ttl=True)
        else:
            file = options["path"] or os.path.join(get_cache_path(options["folder_name"]),
                                                   options["name"] + ".tcache")
            self._store = native().Store(file)

    def __enter__(self) -> "CacheContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Drops a memory context's entries; closes a file context's store."""
        if self._memory is not None:
            self._memory.clear()
        else:
            self._store.close()

    def set(self, key: Any, value: Any, ttl: float | None = None) -> None:
        """Stores ``value`` under ``key`` for ``ttl`` seconds (None: the context's ttl)."""
        ttl = _options.seconds("ttl", ttl) if ttl is not None else self.ttl
        if self._memory is not None:
            self._memory.set(memory_key((key,)), value, ttl)
            return
        ext = native()
        self._store.put(ext.encode_key(key), ext.encode_value(value, allow_pickle=self._pickle),
                        ttl=ttl)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        if self._memory is not None:
            value = self._memory.get(memory_key((key,)))
            return default if value is MISS else value
        ext = native()
        raw = self._store.get(ext.encode_key(key))
        return default if raw is None else ext.decode_value(raw, allow_pickle=self._pickle)

    def delete(self, key: Any) -> bool:
        """Removes ``key``; True if it was there."""
        if self._memory is not None:
            return self._memory.delete(memory_key((key,)))
        return self._store.erase(native().encode_key(key))

    def __contains__(self, key: Any) -> bool:
        return self.get(key, MISS) is not MISS

    def __len__(self) -> int:
        return len(self._memory) if self._memory is not None else len(self._store)
