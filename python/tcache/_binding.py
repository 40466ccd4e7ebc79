"""Binding a call's arguments to what its cache key is made of.

A cached call's key is the tuple of its arguments bound to the signature
with defaults applied, so ``f(5)`` and ``f(5, y=1)`` are one key. Binding
with ``inspect.Signature.bind`` costs microseconds, so a plain positional
call (no keywords, no ``key=``/``ignore=``, a signature of positional
parameters only) takes a fast path: its arguments, completed with the
defaults of the parameters it leaves out, are the key as they are. Other
calls of a signature without ``*args``/``**kwargs`` fill one slot per
parameter by name; only the rest (and calls that do not fit, so that the
TypeError is inspect's) go through ``inspect.Signature.bind``.

The bound tuple lists the parameters in signature order, each once:
positional and keyword-only parameters as their value, ``*args`` as a tuple,
``**kwargs`` as a dict (the codec encodes dicts order-independently).
``ignore=`` leaves names out; ``key=`` replaces the whole tuple by
``(key(*args, **kwargs),)``; for a classmethod the class is replaced by its
``module.qualname`` (a class has no canonical encoding, its name has).

Thread safety: a Binder is immutable after construction; ``bind`` may be
called from any number of threads.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Hashable, Iterable

from ._native import native

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_EMPTY = inspect.Parameter.empty


def class_name(cls: type) -> str:
    """The stable name a class stands for in a key: ``module.qualname``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Binder:
    """Maps a call ``(args, kwargs)`` of ``func`` to the tuple its key encodes."""

    __slots__ = ("_sig", "_names", "_ignore", "_key", "_first_is_class", "_n", "_defaults",
                 "_fast", "plain", "_by_name", "_positional", "_all_defaults", "_keep")

    def __init__(self, func: Callable[..., Any], *, ignore: Iterable[str] = (),
                 key: Callable[..., Any] | None = None, first_is_class: bool = False) -> None:
        if isinstance(ignore, str):
            ignore = (ignore,)
        self._sig = inspect.signature(func)
        params = list(self._sig.parameters.values())
        self._names = [p.name for p in params]
        self._ignore = frozenset(ignore)
        unknown = sorted(self._ignore.difference(self._names))
        if unknown:
            raise TypeError(f"tcache: ignore= names {unknown}, which are not parameters of "
                            f"{getattr(func, '__qualname__', func)!r} (its parameters: "
                            f"{self._names})")
        self._key = key
        self._first_is_class = first_is_class
        self._n = len(params)
        # The fast path: positional parameters only, no key=/ignore=/class.
        self._fast = (key is None and not self._ignore and not first_is_class
                      and all(p.kind in _POSITIONAL for p in params))
        self._defaults = tuple(p.default for p in params
                               if p.default is not inspect.Parameter.empty)
        # True when a call with exactly n positional arguments is its own key.
        self.plain = self._fast
        # Keyword binding without inspect (no *args/**kwargs in the signature):
        # the slot of each name a keyword may fill, how many parameters take
        # positions, each parameter's default (or _EMPTY), and the slots kept.
        simple = all(p.kind in _POSITIONAL or p.kind == p.KEYWORD_ONLY for p in params)
        self._by_name = ({p.name: i for i, p in enumerate(params)
                          if p.kind != p.POSITIONAL_ONLY} if simple else None)
        self._positional = sum(p.kind in _POSITIONAL for p in params)
        self._all_defaults = [p.default for p in params]
        self._keep = [i for i, p in enumerate(params) if p.name not in self._ignore]

    @property
    def arity(self) -> int:
        """The number of parameters (for the callers' own fast paths)."""
        return self._n

    def bind(self, args: tuple, kwargs: dict) -> tuple:
        """The key tuple of the call ``func(*args, **kwargs)``.

        Raises TypeError (as calling the function would) when the call does
        not match the signature.
        """
        if self._fast and not kwargs:
            n = len(args)
            if n == self._n:
                return args
            missing = self._n - n
            if 0 < missing <= len(self._defaults):
                return args + self._defaults[len(self._defaults) - missing:]
        if self._key is not None:
            return (self._key(*args, **kwargs),)
        values = self._slots(args, kwargs)
        if values is None:  # *args/**kwargs, or a call that does not fit: inspect's way
            bound = self._sig.bind(*args, **kwargs)
            bound.apply_defaults()
            values = [bound.arguments[name] for name in self._names]
        if self._first_is_class and isinstance(values[0], type):
            values[0] = class_name(values[0])
        if len(self._keep) == self._n:
            return tuple(values)
        return tuple(values[i] for i in self._keep)

    def _slots(self, args: tuple, kwargs: dict) -> list | None:
        """Each parameter's value for a call of a signature without *args/**kwargs.

        None when the signature has them or the call does not fit it (too
        many arguments, an unknown or repeated name, a missing one): the
        caller then binds with inspect, which raises the right TypeError.
        """
        by_name = self._by_name
        if by_name is None or len(args) > self._positional:
            return None
        values = list(args)
        values.extend(self._all_defaults[len(args):])
        for name, value in kwargs.items():
            i = by_name.get(name)
            if i is None or i < len(args):
                return None
            values[i] = value
        if any(value is _EMPTY for value in values):  # identity: values may be arrays
            return None
        return values


# Argument types whose equality implies equal types among themselves (1 ==
# True == 1.0 but bool and float are not here), so a tuple of them is a typed
# in-process key as it is.
FAST_TYPES = frozenset({int, str, bytes})
_TYPED = object()  # marks a hashable key tuple that carries its types
_CANONICAL = object()  # marks a key made of canonical bytes (unhashable arguments)


def memory_key(bound: tuple) -> Hashable:
    """The in-process (``mcache``, ``acache`` coalescing) key of a bound tuple.

    Typed like ``functools.lru_cache(typed=True)``: ``f(1)``, ``f(True)`` and
    ``f(1.0)`` are three keys. One int, str or bytes argument is its own key,
    a tuple of them the tuple; other hashable arguments are the tuple with
    their types (objects by their own ``__eq__``/``__hash__``, by default
    their identity: right within one process); unhashable ones (lists,
    dicts) and objects with ``__tcache_key__`` their canonical bytes
    (``_tcache.encode_key``). The three forms never compare equal.
    """
    for value in bound:
        if type(value) not in FAST_TYPES:
            break
    else:
        return bound[0] if len(bound) == 1 else bound
    if any(hasattr(type(value), "__tcache_key__") for value in bound):
        return (_CANONICAL, native().encode_key(bound))
    try:
        hash(bound)
    except TypeError:
        return (_CANONICAL, native().encode_key(bound))
    return (_TYPED, bound, tuple(map(type, bound)))
