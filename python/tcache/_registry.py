"""Every cache made in this process, for ``get_stats``, ``clear_cache`` and fork.

Each decorator registers its cache object (anything with ``name``,
``info() -> dict``, ``clear() -> int`` and ``after_fork_child()``). The
registry holds weak references: a wrapper that is garbage collected leaves.

Fork: ``os.register_at_fork(after_in_child=...)`` gives every registered
cache a fresh lock (one a parent thread held at fork would stay held). The
extension's stores and functions notice the fork by themselves (the
library's fork counter, checked on each call) and reopen in the child, so a
``multiprocessing`` child made with fork uses its inherited wrappers as they
are.

Thread safety: all functions may be called from any thread.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

log = logging.getLogger("tcache")

_lock = threading.Lock()
_caches: "weakref.WeakSet[Any]" = weakref.WeakSet()


def register(cache: Any) -> None:
    with _lock:
        _caches.add(cache)


def _all() -> list[Any]:
    with _lock:
        return list(_caches)


def get_stats() -> dict[str, dict[str, Any]]:
    """{function name: its cache_info() as a dict} for every cache of this process.

    Two caches of one name (e.g. one per test) are summed: hits, misses and
    currsize add up, the other fields are the last one's.
    """
    stats: dict[str, dict[str, Any]] = {}
    for cache in _all():
        info = dict(cache.info())
        seen = stats.get(cache.name)
        if seen is not None:
            for field in ("hits", "misses", "currsize"):
                info[field] = info.get(field, 0) + seen.get(field, 0)
        stats[cache.name] = info
    return stats


def clear_cache(name: str | None = None) -> int:
    """Clears the caches named ``name`` (all when None); returns the entries removed."""
    return sum(cache.clear() for cache in _all() if name is None or cache.name == name)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for cache in list(_caches):
        cache.after_fork_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
