"""The in-process entry stores behind ``mcache`` and ``CacheContext("memory")``.

``MemoryStore(maxsize, policy, ttl)`` maps hashable keys to values (kept as
they are, not serialised), at most ``maxsize`` entries (None: unbounded),
evicting by policy when full:

  lru   the least recently used entry (an OrderedDict, moved to the end on
        every hit)
  fifo  the oldest inserted entry (a dict in insertion order; hits do not
        reorder)
  lfu   the least frequently used entry, the oldest among equals (frequency
        buckets of insertion-ordered dicts: O(1) hit and eviction)

With ``ttl`` (float seconds), an entry older than ``ttl`` is a miss and is
dropped when met.

Thread safety: every method may be called from any number of threads. The
LRU and FIFO ``get`` without TTL are lock-free: each is one or two C-level
dict operations, each atomic under the GIL, and a racing eviction between
them is a miss. Writes, evictions and LFU hits take the store's lock. After
``fork()`` the child calls ``reset_lock()`` (a lock held by a parent thread
at fork would never be released in the child).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

MISS: Any = object()  # returned by get() for a missing or expired key

_monotonic = time.monotonic


class MemoryStore:
    __slots__ = ("maxsize", "policy", "ttl", "_expiring", "_data", "_lock", "_freq", "_buckets", "_min",
                 "get")

    def __init__(self, maxsize: int | None, policy: str = "lru", ttl: float | None = None,
                 *, per_entry_ttl: bool = False):
        self.maxsize = maxsize
        self.policy = policy
        self.ttl = ttl or None
        # Entries carry deadlines when there is a TTL or set() may give one.
        self._expiring = self.ttl is not None or per_entry_ttl
        self._lock = threading.Lock()
        self._data: dict = OrderedDict() if policy == "lru" else {}
        self._freq: dict = {}  # lfu: key -> count
        self._buckets: dict = {}  # lfu: count -> {key: None} in insertion order
        self._min = 0
        self.get: Callable[[Hashable], Any] = self._make_get()

    def _make_get(self) -> Callable[[Hashable], Any]:
        """The fastest lookup for this policy and TTL: ``get(key)`` -> value or MISS."""
        data = self._data
        if self.policy == "lfu":
            return self._get_lfu
        if self._expiring:
            return self._get_expiring
        if self.policy == "lru":
            move = data.move_to_end

            def get_lru(key: Hashable) -> Any:
                try:
                    value = data[key]
                    move(key)
                except KeyError:
                    return MISS
                return value

            return get_lru
        get = data.get

        def get_fifo(key: Hashable) -> Any:
            return get(key, MISS)

        return get_fifo

    def lru_table(self) -> "OrderedDict | None":
        """The LRU table itself when entries are stored bare (lru, no TTL), else None.

        For a caller's inlined hit path: ``value = table[key];
        table.move_to_end(key)``, a KeyError from either being a miss (the
        same as ``get``, without its call).
        """
        return self._data if self.policy == "lru" and not self._expiring else None

    def _unwrap(self, key: Hashable, stored: Any) -> Any:
        """The value of a stored (value, deadline) pair, or MISS (and drops it) if expired."""
        value, deadline = stored
        if deadline < _monotonic():
            with self._lock:
                if self._data.get(key) is stored:
                    self._remove(key)
            return MISS
        return value

    def _get_expiring(self, key: Hashable) -> Any:
        try:
            stored = self._data[key]
            if self.policy == "lru":
                self._data.move_to_end(key)
        except KeyError:
            return MISS
        return self._unwrap(key, stored)

    def _get_lfu(self, key: Hashable) -> Any:
        with self._lock:
            stored = self._data.get(key, MISS)
            if stored is MISS:
                return MISS
            self._touch(key)
        return self._unwrap(key, stored) if self._expiring else stored

    def _touch(self, key: Hashable) -> None:  # lfu, lock held
        count = self._freq[key]
        bucket = self._buckets[count]
        del bucket[key]
        if not bucket:
            del self._buckets[count]
            if self._min == count:
                self._min = count + 1
        self._freq[key] = count + 1
        self._buckets.setdefault(count + 1, {})[key] = None

    def _remove(self, key: Hashable) -> None:  # lock held
        del self._data[key]
        if self.policy == "lfu":
            count = self._freq.pop(key)
            bucket = self._buckets[count]
            del bucket[key]
            if not bucket:
                del self._buckets[count]

    def _evict_one(self) -> None:  # lock held, store not empty
        if self.policy == "lru":
            self._data.popitem(last=False)
        elif self.policy == "fifo":
            del self._data[next(iter(self._data))]
        else:
            if self._min not in self._buckets:
                self._min = min(self._buckets)
            self._remove(next(iter(self._buckets[self._min])))

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Stores ``value`` under ``key``, evicting one entry by policy when full.

        ``ttl`` overrides the store's TTL for this entry (a store made with
        per_entry_ttl=True or a TTL; elsewhere it is ignored).
        """
        ttl = ttl if ttl is not None else self.ttl
        stored = value
        if self._expiring:
            stored = (value, _monotonic() + (ttl if ttl is not None else float("inf")))
        with self._lock:
            if key in self._data:
                self._remove(key)
            elif self.maxsize is not None:
                while len(self._data) >= self.maxsize:
                    self._evict_one()
            self._data[key] = stored
            if self.policy == "lfu":
                self._freq[key] = 1
                self._buckets.setdefault(1, {})[key] = None
                self._min = 1

    def delete(self, key: Hashable) -> bool:
        """Removes ``key``; True if it was there."""
        with self._lock:
            if key not in self._data:
                return False
            self._remove(key)
            return True

    def clear(self) -> int:
        """Removes every entry; returns how many there were."""
        with self._lock:
            n = len(self._data)
            self._data.clear()
            self._freq.clear()
            self._buckets.clear()
            self._min = 0
            return n

    def __len__(self) -> int:
        return len(self._data)

    def reset_lock(self) -> None:
        """In a child after fork(): a fresh lock (the parent's may have been held)."""
        self._lock = threading.Lock()
