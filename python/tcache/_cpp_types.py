"""Python annotations -> C++ type specs, for entries shared with C++.

A spec is a tuple tree naming a C++ type the extension's C++-compatible
codec (``_tcache.cpp_encode`` and friends) reads and writes exactly as
``tcache::Codec`` does:

=====================  =============================  ==========================
annotation             spec                           C++ type
=====================  =============================  ==========================
``int``                ``("int64",)``                 ``std::int64_t``
``float``              ``("double",)``                ``double``
``bool``               ``("bool",)``                  ``bool``
``str``                ``("string",)``                ``std::string``
``bytes``              ``("bytes",)``                 ``std::vector<std::uint8_t>``
``Optional[T]``,       ``("optional", T)``            ``std::optional<T>``
``T | None``
``list[T]``            ``("vector", T)``              ``std::vector<T>``
``tuple[A, B, ...]``   ``("tuple", A, B, ...)``       ``std::tuple<A, B, ...>``
``dict[K, V]``         ``("map", K, V)``              ``std::map<K, V>``
=====================  =============================  ==========================

(``typing.List``, ``Tuple`` and ``Dict`` are the same.) Anything else,
including ``tuple[T, ...]``, bare ``list``, unions of two types, strings
(unresolved forward references) and ``typing.Any``, does not map: the
function then uses Python's self-describing codec.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Callable, Iterable, Optional

Spec = tuple

_LEAVES: dict[Any, Spec] = {
    bool: ("bool",),
    int: ("int64",),
    float: ("double",),
    str: ("string",),
    bytes: ("bytes",),
}


def spec_of(annotation: Any) -> Optional[Spec]:
    """The C++ type spec of an annotation, or None when it does not map."""
    leaf = _LEAVES.get(annotation) if isinstance(annotation, type) else None
    if leaf is not None:
        return leaf
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(rest) == len(args):
            return None
        inner = spec_of(rest[0])
        return None if inner is None else ("optional", inner)
    if origin is list and len(args) == 1:
        inner = spec_of(args[0])
        return None if inner is None else ("vector", inner)
    if origin is tuple:
        if Ellipsis in args:
            return None
        if args == ((),):  # typing.Tuple[()]: the empty tuple
            args = ()
        parts = [spec_of(a) for a in args]
        return None if None in parts else ("tuple", *parts)
    if origin is dict and len(args) == 2:
        key, value = spec_of(args[0]), spec_of(args[1])
        return None if key is None or value is None else ("map", key, value)
    return None


def specs_of_function(
    fn: Callable[..., Any], ignore: Iterable[str] = ()
) -> Optional[tuple[list[Spec], Spec]]:
    """(argument specs in signature order, result spec) of fn, or None.

    None unless every parameter that is part of the key (not in ``ignore``)
    is positional-or-keyword or positional-only and annotated with a mapping
    type, and the return annotation maps too: only then can a C++ function
    of the same signature share fn's entries.
    """
    try:
        hints = typing.get_type_hints(fn)
        signature = inspect.signature(fn)
    except (NameError, TypeError, ValueError):
        return None
    if "return" not in hints:
        return None
    result = spec_of(hints["return"])
    if result is None:
        return None
    skipped = set(ignore)
    specs: list[Spec] = []
    for name, param in signature.parameters.items():
        if name in skipped:
            continue
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            return None
        spec = spec_of(hints.get(name, inspect.Parameter.empty))
        if spec is None:
            return None
        specs.append(spec)
    return specs, result
