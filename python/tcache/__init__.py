"""tcache for Python: the shared, lock-free, crash-proof cache file of the C++
library, and its decorators.

    import tcache

    @tcache.mcache(maxsize=1024, ttl=60, policy="lru")   # in-process
    def f(x, y=1): ...

    @tcache.bcache(name="price", version=1)              # the shared file
    def price(sym: str, day: int) -> float: ...

    f.cache_info(); f.cache_clear(); f.invalidate(1, y=2)
    tcache.get_stats(); tcache.clear_cache(); tcache.get_cache_path()
    with tcache.config(dir="/tmp/c", default_ttl=5.0): ...
    s = tcache.Store("c.tcache", capacity_bytes=256 << 20); s["k"] = b"v"

Logging: warnings (a backend that fell back, once per cause) go to
``logging.getLogger("tcache")``; with logging unconfigured, Python prints
them to stderr, as C++ does without a logger.

Fork: a child made with fork() uses the wrappers and stores it inherited;
the extension's stores and functions reopen in the child at their next call
(they check the library's fork counter), and the package gives its caches
fresh locks (os.register_at_fork).

Thread safety: every public function and wrapper may be used from any
number of threads; the files are shared by any number of processes.
"""

from __future__ import annotations

from typing import Any

from . import _options
from ._acache import acache
from ._config import config, get_cache_path
from ._context import CacheContext
from ._decorate import CacheInfo
from ._mcache import mcache
from ._native import native
from ._persistent import bcache, fcache, ucache
from ._registry import clear_cache, get_stats
from .errors import *  # noqa: F401,F403  (CacheError and one class per code)
from .errors import __all__ as _error_names

__all__ = [
    "mcache", "bcache", "fcache", "acache", "ucache", "config", "CacheContext", "CacheInfo",
    "get_stats", "clear_cache", "get_cache_path", "create_cache_config", "Store", "compact",
    *_error_names,
]


def create_cache_config(**options: Any) -> dict[str, Any]:
    """The validated options, normalised, for ``@decorator(**config)``.

    Accepts the decorators' options (maxsize, ttl, policy, name, version,
    folder_name, path, remote, preferred_engine, backend, compress, secure,
    serializer, lease_timeout, key, ignore). Raises ConfigurationError
    (also a ValueError) naming a bad or unknown option.
    """
    return _options.check("create_cache_config", options)


def __getattr__(name: str) -> Any:
    # Store and compact are the extension's; imported when first used.
    if name in ("Store", "compact"):
        return getattr(native(), name)
    raise AttributeError(f"module 'tcache' has no attribute {name!r}")
