"""``bcache``, ``fcache`` and ``ucache``: the persistent decorators, over
``_tcache.Function``.

Everything persistent is C++: ``_tcache.Function(kind, name, version, ...)``
resolves the file, the Redis tier and the fallbacks exactly as the C++
decorator of that kind, makes the keys (``make_key`` over the codec's bytes
of the bound arguments), frames and decodes values, and takes the store's
lease on a miss (waiting with the GIL released). A hit is one extension
call, ``lookup(bound)``; for a plain positional call ``bound`` is the
argument tuple itself (see _binding.py).

Types: when every parameter and the return of the function are annotated
with types that map to C++ (``_cpp_types.spec_of``: int, float, bool, str,
bytes, Optional, list, tuple, dict), keys and values are exactly
``tcache::Codec``'s bytes for those types, so a C++ decorator of the same
name and version shares the entries; otherwise Python's self-describing
codec is used. ``key=``/``ignore=`` and ``serializer=`` objects always use
Python's codec.

Values the codec does not know are pickled only when the file is the
user's own (the extension decides: 0600, owner-only, no Redis), or with
``serializer="pickle"``; ``secure=True`` never pickles; an object with
``dumps``/``loads`` replaces the value codec (its bytes are stored).

Thread safety: wrappers may be called from any number of threads and
processes at once (single flight through the lease).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

from . import _config, _options
from ._binding import Binder
from ._decorate import decorate, options_of
from ._native import native

log = logging.getLogger("tcache")


def _warn(line: str) -> None:
    log.warning("%s", line)


def cpp_specs(func: Callable[..., Any], options: dict[str, Any]) -> tuple[Any, Any]:
    """(arg_specs, result_spec) when the keyed signature maps to C++ types, else (None, None)."""
    if options.get("key") is not None or options.get("serializer") not in (None, "pickle"):
        return None, None
    if not getattr(func, "__annotations__", None):
        return None, None
    from ._cpp_types import specs_of_function
    specs = specs_of_function(func, options.get("ignore", ()))
    return (None, None) if specs is None else specs


def _allow_pickle(options: dict[str, Any]) -> bool | None:
    serializer = options.get("serializer")
    if options.get("secure"):
        if serializer == "pickle":
            raise _options.configuration_error("options 'secure' and serializer='pickle' "
                                               "contradict each other; give one of them")
        return False
    return True if serializer == "pickle" else None


class _Persistent:
    """The cache behind one bcache/fcache/ucache wrapper: a _tcache.Function."""

    def __init__(self, name: str, function: Any, serializer: Any = None):
        self.name = name
        self.function = function
        # A serializer object's dumps/loads around the stored bytes, or None.
        custom = serializer not in (None, "pickle")
        self.dumps = serializer.dumps if custom else None
        self.loads = serializer.loads if custom else None

    def info(self) -> dict[str, Any]:
        return self.function.info()

    def clear(self) -> int:
        return self.function.clear()

    def invalidate(self, bound: tuple) -> bool:
        return self.function.invalidate(bound)

    def after_fork_child(self) -> None:
        pass  # the extension reopens its stores itself (its own at-fork handler)


def make_function(kind: str, func: Callable[..., Any], name: str,
                  options: dict[str, Any]) -> Any:
    """The ``_tcache.Function`` of decorator ``kind`` for ``func`` and its options."""
    arg_specs, result_spec = cpp_specs(func, options)
    return native().Function(
        kind, name, options.get("version", ""), path=options.get("path"),
        folder=options.get("folder_name"), ttl=options.get("ttl"),
        maxsize=options.get("maxsize"), remote=options.get("remote"),
        backend=options.get("backend"), compress=options.get("compress"),
        lease_timeout=options.get("lease_timeout") or 60.0, arg_specs=arg_specs,
        result_spec=result_spec, allow_pickle=_allow_pickle(options), logger=_warn,
        capacity_bytes=options.get("capacity_bytes"))


def _build(kind: str) -> Callable[..., tuple[_Persistent, Callable[..., Any]]]:
    def build(func: Callable[..., Any], name: str, binder: Binder,
              options: dict[str, Any]) -> tuple[_Persistent, Callable[..., Any]]:
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"tcache: {kind} on the coroutine function {name!r}: use "
                            f"@tcache.acache for async def")
        function = make_function(kind, func, name, options)
        cache = _Persistent(name, function, options.get("serializer"))
        if function.disabled:
            def call_through(*args: Any, **kwargs: Any) -> Any:
                return func(*args, **kwargs)
            return cache, call_through
        lookup, store, abandon = function.lookup, function.store, function.abandon
        scope = _config.SCOPE_DISABLED
        bind, arity, plain = binder.bind, binder.arity, binder.plain
        dumps, loads = cache.dumps, cache.loads

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if scope[0]:
                return func(*args, **kwargs)
            bound = args if plain and not kwargs and len(args) == arity else bind(args, kwargs)
            found, got = lookup(bound)
            if found:
                return got if loads is None else loads(got)
            try:
                value = func(*args, **kwargs)
            except BaseException:
                abandon(got)
                raise
            store(got, value if dumps is None else dumps(value))
            return value

        return cache, wrapper

    return build


_build_bcache, _build_fcache, _build_ucache = _build("bcache"), _build("fcache"), _build("ucache")


def bcache(func: Callable[..., Any] | None = None, /, *, name: str | None = None,
           version: int | str | None = None, folder_name: str | None = None,
           path: str | None = None, ttl: float | None = None, maxsize: int | None = None,
           remote: str | None = None, key: Callable[..., Any] | None = None,
           ignore: tuple[str, ...] | str = (), serializer: Any = None, secure: bool = False,
           lease_timeout: float | None = None, capacity_bytes: int | None = None) -> Any:
    """Memoizes ``func`` in the shared cache file (and Redis with ``remote=``).

    name: the entries' identity (default module.qualname); version: change
    it when the function's meaning changes (an int is its decimal string);
    folder_name: the directory under the cache root (or one, when absolute);
    path: the file; ttl: float seconds; remote: a Redis URI for a second
    level; capacity_bytes: the size of a file it creates (default 256 MiB). Raises ConfigurationError for a bad option, and what opening the
    file raises (UnsafePermissionsError, CorruptFileError, ...).
    """
    return decorate("bcache", _build_bcache, func, options_of(locals()))


def fcache(func: Callable[..., Any] | None = None, /, *, name: str | None = None,
           version: int | str | None = None, folder_name: str | None = None,
           path: str | None = None, ttl: float | None = None, compress: bool = True,
           key: Callable[..., Any] | None = None, ignore: tuple[str, ...] | str = (),
           serializer: Any = None, secure: bool = False,
           lease_timeout: float | None = None, capacity_bytes: int | None = None) -> Any:
    """As bcache, for large values (numpy arrays): LZ4 when compress, blob files."""
    return decorate("fcache", _build_fcache, func, options_of(locals()))


def ucache(func: Callable[..., Any] | None = None, /, *, name: str | None = None,
           version: int | str | None = None, maxsize: int | None = None,
           ttl: float | None = None, folder_name: str | None = None,
           preferred_engine: str | None = None, backend: str | None = None,
           path: str | None = None, key: Callable[..., Any] | None = None,
           ignore: tuple[str, ...] | str = (), serializer: Any = None, secure: bool = False,
           lease_timeout: float | None = None, capacity_bytes: int | None = None) -> Any:
    """Memoizes ``func`` on the best backend available, always working.

    backend (or the original's preferred_engine): "memory", "file", a file
    URI or a Redis URI; None: TCACHE_BACKEND, else the file. A backend that
    cannot be used falls back (Redis > file > memory), warning once per
    cause through logging.getLogger("tcache").
    """
    return decorate("ucache", _build_ucache, func, options_of(locals()))
