"""``mcache``: an in-process memo cache, pure Python, typed, thread-safe.

Values are kept as they are (no serialisation); keys are ``memory_key`` of
the bound arguments (typed; unhashable arguments by their canonical bytes).
The hit of a plain positional call on one int, str or bytes argument is one
dict lookup on the argument itself: no binding, no tuple, no lock (see
_memory.py for why the lock-free LRU hit is safe).

As in C++ (tcache/decorators.h): ``ttl=None`` takes TCACHE_DEFAULT_TTL (or
a ``config(default_ttl=...)``), else entries do not expire; a wrapper made
while caching is disabled calls through for good; exceptions propagate and
are not cached; the function runs with no lock held (so it may recurse into
its own wrapper). Two threads missing one key at once may both compute it
(in-process single flight is acache's job; the persistent decorators have
leases).

Thread safety: the wrapper may be called from any number of threads.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from . import _config
from ._binding import FAST_TYPES, Binder, memory_key
from ._decorate import decorate, options_of
from ._memory import MISS, MemoryStore

DEFAULT_MAXSIZE = 4096  # as C++ McacheOptions


def _count(counter: "itertools.count[int]") -> int:
    """The next value an itertools.count would return: how often next() was called."""
    return counter.__reduce__()[1][0]


class _Mcache:
    """The cache behind one mcache wrapper."""

    def __init__(self, name: str, binder: Binder, store: MemoryStore, disabled: bool):
        self.name = name
        self.binder = binder
        self.store = store
        self.disabled = disabled
        self.hits = itertools.count()  # next() is atomic under the GIL
        self.misses = itertools.count()

    def info(self) -> dict[str, Any]:
        return {"hits": _count(self.hits), "misses": _count(self.misses),
                "maxsize": self.store.maxsize or 0, "currsize": len(self.store),
                "backend": "memory", "policy": self.store.policy, "ttl": self.store.ttl}

    def clear(self) -> int:
        return self.store.clear()

    def invalidate(self, bound: tuple) -> bool:
        return self.store.delete(memory_key(bound))

    def after_fork_child(self) -> None:
        self.store.reset_lock()


def _build(func: Callable[..., Any], name: str, binder: Binder,
           options: dict[str, Any]) -> tuple[_Mcache, Callable[..., Any]]:
    cfg = _config.current()
    ttl = options.get("ttl") or cfg["default_ttl"] or None
    disabled = bool(cfg["disable"])
    maxsize = options.get("maxsize", DEFAULT_MAXSIZE)
    store = MemoryStore(maxsize, options.get("policy", "lru"), ttl)
    cache = _Mcache(name, binder, store, disabled)
    get, put = store.get, store.set
    hits, misses = cache.hits, cache.misses
    scope = _config.SCOPE_DISABLED
    bind = binder.bind

    if disabled:
        def call_through(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)
        return cache, call_through

    def slow(args: tuple, kwargs: dict) -> Any:
        if scope[0]:
            return func(*args, **kwargs)
        key = memory_key(bind(args, kwargs))
        value = get(key)
        if value is not MISS:
            next(hits)
            return value
        next(misses)
        value = func(*args, **kwargs)
        put(key, value)
        return value

    table = store.lru_table()
    if binder.plain and binder.arity == 1 and table is not None:
        fast = FAST_TYPES
        move = table.move_to_end

        def lru_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not kwargs and len(args) == 1 and type(args[0]) in fast and not scope[0]:
                try:
                    value = table[args[0]]
                    move(args[0])
                except KeyError:
                    return slow(args, kwargs)
                next(hits)
                return value
            return slow(args, kwargs)

        return cache, lru_wrapper

    if binder.plain and binder.arity == 1:
        fast = FAST_TYPES

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not kwargs and len(args) == 1 and type(args[0]) in fast and not scope[0]:
                value = get(args[0])
                if value is not MISS:
                    next(hits)
                    return value
            return slow(args, kwargs)

        return cache, wrapper

    def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        return slow(args, kwargs)

    return cache, wrapper


def mcache(func: Callable[..., Any] | None = None, /, *, maxsize: int | None = DEFAULT_MAXSIZE,
           ttl: float | None = None, policy: str = "lru", key: Callable[..., Any] | None = None,
           ignore: tuple[str, ...] | str = (), name: str | None = None) -> Any:
    """Memoizes ``func`` in this process. Bare (``@mcache``) or called (``@mcache(...)``).

    maxsize: entries (None: unbounded); ttl: float seconds (None:
    TCACHE_DEFAULT_TTL, else none); policy: "lru", "lfu" or "fifo"; key: a
    function of the call's arguments whose result is the key; ignore:
    argument names left out of the key; name: for get_stats/clear_cache
    (default module.qualname). Raises ConfigurationError for a bad option.
    """
    return decorate("mcache", _build, func, options_of(locals()))
