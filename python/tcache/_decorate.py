"""What the five decorators share: bare or called use, functions, methods,
static and class methods, the default name, and the wrapper's cache methods.

``decorate(kind, build, func, options)`` validates ``options`` (raising
ConfigurationError), then for each function it is applied to makes a Binder
and calls ``build(func, name, binder, options)``, which returns the cache
(an object with ``call``, ``invalidate(bound)``, ``info()``, ``clear()`` and
``after_fork_child()``) and the callable wrapper. The wrapper gets
``functools.wraps`` (name, docstring, ``__wrapped__``, so
``inspect.signature`` shows the function's own), ``cache_info()``,
``cache_clear()`` and ``invalidate(*args, **kwargs)``, and the cache is
registered for ``get_stats``/``clear_cache``.

A method's ``self`` is an ordinary first argument (so part of the key); a
classmethod's ``cls`` is keyed by its ``module.qualname``; a staticmethod is
a plain function.

Thread safety: decorating is safe from any thread; the wrappers' safety is
their cache's.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from . import _options, _registry
from ._binding import Binder


class CacheInfo(dict):
    """``cache_info()``'s answer: a dict whose fields are also attributes.

    Fields as C++ ``tcache::CacheInfo``: hits, misses, maxsize, currsize,
    backend, and for persistent caches decode_errors, fallbacks,
    backend_errors (and what else the extension reports).
    """

    def __getattr__(self, field: str) -> Any:
        try:
            return self[field]
        except KeyError:
            raise AttributeError(field) from None


def default_name(func: Callable[..., Any]) -> str:
    """``module.qualname``: stable across processes, unlike an address."""
    return f"{func.__module__}.{func.__qualname__}"


def options_of(arguments: dict[str, Any]) -> dict[str, Any]:
    """A public decorator's keyword options: its ``locals()`` less ``func``."""
    return {name: value for name, value in arguments.items() if name != "func"}


def decorate(kind: str, build: Callable[..., tuple[Any, Callable[..., Any]]],
             func: Any, options: dict[str, Any]) -> Any:
    """Applies decorator ``kind`` to ``func``, or returns the decorator when func is None."""
    options = _options.check(kind, options)

    def apply_function(f: Callable[..., Any], first_is_class: bool) -> Callable[..., Any]:
        name = options.get("name") or default_name(f)
        binder = Binder(f, ignore=options.get("ignore", ()), key=options.get("key"),
                        first_is_class=first_is_class)
        cache, wrapper = build(f, name, binder, options)
        functools.update_wrapper(wrapper, f)
        wrapper.cache_info = lambda: CacheInfo(cache.info())
        wrapper.cache_clear = cache.clear
        wrapper.invalidate = lambda *args, **kwargs: cache.invalidate(binder.bind(args, kwargs))
        wrapper.cache = cache
        _registry.register(cache)
        return wrapper

    def apply(f: Any) -> Any:
        if isinstance(f, staticmethod):
            return staticmethod(apply_function(f.__func__, False))
        if isinstance(f, classmethod):
            return classmethod(apply_function(f.__func__, True))
        if not callable(f):
            raise TypeError(f"tcache: @{kind} decorates a function or method, not {f!r}; "
                            f"options are keywords: @{kind}(maxsize=..., ttl=...)")
        return apply_function(f, False)

    return apply if func is None else apply(func)
