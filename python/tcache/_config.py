"""Process-wide defaults: ``config(...)``, ``get_cache_path``, and the scope flag.

The configuration is the C++ one (tcache/config.h), reached through the
extension: ``TCACHE_DIR``, ``TCACHE_DISABLE``, ``TCACHE_DEFAULT_TTL`` and
``TCACHE_BACKEND`` are read by C++, and ``with tcache.config(...)`` is a C++
``ScopedConfig`` (``_tcache.push_config``/``pop_config``). Decorators read it
when they are made.

``config(disable=True)`` also makes wrappers made earlier call through while
it lives, as in C++: this module keeps the innermost live setting of
``disable`` in ``SCOPE_DISABLED[0]``, one list read on every cached call.

Thread safety: ``config`` may be entered from any thread; scopes are
process-wide (not per thread) and must be exited in reverse order of entry,
as ``with`` blocks are. Process safety: each process has its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

from . import _options
from ._native import native

# SCOPE_DISABLED[0]: True while the innermost live config() that sets
# `disable` sets it True. A list so that wrappers hold the cell, not a copy.
SCOPE_DISABLED = [False]
_scope_lock = threading.Lock()
_disable_stack: list[tuple[object, bool]] = []  # (scope id, disable) of live scopes


def current() -> dict[str, Any]:
    """The configuration in effect: {"dir", "disable", "default_ttl", "backend"}."""
    return native().current_config()


def _publish_scope_flag() -> None:  # _scope_lock held
    SCOPE_DISABLED[0] = bool(_disable_stack) and _disable_stack[-1][1]


@contextlib.contextmanager
def config(dir: str | os.PathLike | None = None, default_ttl: float | None = None,
           disable: bool | None = None, backend: str | None = None) -> Iterator[dict[str, Any]]:
    """Overrides the given defaults for the ``with`` block (a C++ ScopedConfig).

    Yields the configuration in effect inside the block. Raises
    ConfigurationError for a bad value, before anything changes.
    """
    dir = _options.path("dir", dir)
    default_ttl = _options.seconds("default_ttl", default_ttl)
    if disable is not None:
        disable = _options.flag("disable", disable)
    backend = _options.text("backend", backend)
    token = native().push_config(dir=dir, default_ttl=default_ttl, disable=disable,
                                 backend=backend)
    scope = object()
    if disable is not None:
        with _scope_lock:
            _disable_stack.append((scope, disable))
            _publish_scope_flag()
    try:
        yield current()
    finally:
        if disable is not None:
            with _scope_lock:
                _disable_stack[:] = [e for e in _disable_stack if e[0] is not scope]
                _publish_scope_flag()
        native().pop_config(token)


def get_cache_path(folder_name: str | os.PathLike | None = None) -> str:
    """The cache directory (``folder_name`` under the cache root, or it when absolute).

    Creates it, mode 0700, when missing. Raises ConfigurationError when no
    cache root is configured (no TCACHE_DIR, XDG_CACHE_HOME or HOME).
    """
    folder = _options.path("folder_name", folder_name)
    root = current()["dir"]
    if not root and (folder is None or not os.path.isabs(folder)):
        raise _options.configuration_error(
            "no cache directory: set TCACHE_DIR (or XDG_CACHE_HOME or HOME), or pass an "
            "absolute folder_name")
    directory = os.path.join(os.fspath(root), folder) if folder is not None else os.fspath(root)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return directory
