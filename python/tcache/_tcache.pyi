"""Type stubs of tcache's compiled core, ``tcache._tcache`` (import ``tcache``
instead: it re-exports ``Store`` and ``compact``). Seconds are floats
everywhere; None means "not set"."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from . import errors as errors

_Key = str | bytes
_Path = str | os.PathLike[str]
_Buffer = bytes | bytearray | memoryview

# Whether this build has the Redis tier (CMake option TCACHE_WITH_REDIS).
WITH_REDIS: bool

class Store:
    """A tcache cache file: bytes keyed by str (its UTF-8) or bytes. Any number
    of threads and processes may use one file; a forked child reopens it."""

    def __init__(
        self,
        path: _Path,
        *,
        capacity_bytes: int = ...,
        default_ttl: float | None = None,
        mode: int = 0o600,
        read_only: bool = False,
        allow_shared_access: bool = False,
        create_if_missing: bool = True,
        expected_entry_bytes: int = 256,
        page_bytes: int = 0,
        compress_threshold: int = 4096,
        logger: Callable[[str], object] | None = None,
    ) -> None: ...
    def get(self, key: _Key, default: bytes | None = None, /) -> bytes | None: ...
    def __getitem__(self, key: _Key) -> bytes: ...
    def put(self, key: _Key, value: _Buffer, ttl: float | None = None) -> None: ...
    def __setitem__(self, key: _Key, value: _Buffer) -> None: ...
    def erase(self, key: _Key) -> bool: ...
    def __delitem__(self, key: _Key) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def keys(self, prefix: _Key = b"") -> list[bytes]: ...
    def get_many(self, keys: Iterable[_Key]) -> list[bytes | None]: ...
    def get_or_lease(self, key: _Key, timeout: float = 60.0) -> bytes | None: ...
    def release_lease(self, key: _Key) -> None: ...
    def clear(self) -> None: ...
    def erase_prefix(self, prefix: _Key) -> int: ...
    def count_prefix(self, prefix: _Key) -> int: ...
    def purge_expired(self) -> int: ...
    def flush(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def verify(self) -> dict[str, Any]: ...
    def repair(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def max_value_bytes(self) -> int: ...

def compact(
    path: _Path,
    *,
    capacity_bytes: int = 0,
    allow_shared_access: bool = False,
    sync: bool = True,
    threads: int = 0,
    drain_timeout: float = 10.0,
    progress: Callable[[str, int, int], object] | None = None,
    logger: Callable[[str], object] | None = None,
) -> dict[str, int | float]: ...

class Lease:
    """A lease on one key, from Function.lookup: complete it with
    Function.store or Function.abandon (dropping it gives the lease up)."""

    @property
    def held(self) -> bool: ...

_Spec = tuple[Any, ...]

class Function:
    """The C++ core of bcache/fcache/ucache/acache, resolved as the C++
    decorator of that kind (files, keys, value frames, env vars, fallback)."""

    def __init__(
        self,
        kind: Literal["bcache", "fcache", "ucache", "acache"],
        name: str,
        version: str | int | None = "",
        *,
        path: _Path | None = None,
        folder: _Path | None = None,
        ttl: float | None = None,
        maxsize: int | None = None,
        remote: str | None = None,
        backend: str | None = None,
        compress: bool | None = None,
        lease_timeout: float = 60.0,
        arg_specs: Iterable[_Spec] | None = None,
        result_spec: _Spec | None = None,
        allow_pickle: bool | None = None,
        logger: Callable[[str], object] | None = None,
        capacity_bytes: int | None = None,
    ) -> None: ...
    def lookup(self, bound_args: tuple[Any, ...], /) -> tuple[Literal[True], Any] | tuple[
        Literal[False], Lease
    ]: ...
    def lookup_nowait(
        self, bound_args: tuple[Any, ...]
    ) -> tuple[Literal[True], Any] | tuple[Literal[False], Lease | None]: ...
    def store(self, lease: Lease, value: Any) -> None: ...
    def abandon(self, lease: Lease) -> None: ...
    def invalidate(self, bound_args: tuple[Any, ...]) -> bool: ...
    def clear(self) -> int: ...
    def count(self) -> int: ...
    def info(self) -> dict[str, Any]: ...
    @property
    def backend_name(self) -> str: ...
    @property
    def disabled(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def cpp_types(self) -> bool: ...
    @property
    def allow_pickle(self) -> bool: ...

def push_config(
    *,
    dir: _Path | None = None,
    default_ttl: float | None = None,
    disable: bool | None = None,
    backend: str | None = None,
) -> int: ...
def pop_config(token: int) -> None: ...
def current_config() -> dict[str, Any]: ...


# --- codec ---
# The extension's codecs (python/src/codec*.cc). Specs name C++ types as
# tuples: ("int64",) ("double",) ("bool",) ("string",) ("bytes",)
# ("optional", s) ("vector", s) ("tuple", s1, ...) ("map", k, v); see
# tcache._cpp_types.

from typing import Any, Sequence, Union

_Buffer = Union[bytes, bytearray, memoryview]
_Spec = tuple[Any, ...]

def encode_key(obj: object, /) -> bytes:
    """Canonical key bytes of obj (Python codec); TypeError names key=/ignore=."""

def encode_value(obj: object, /, allow_pickle: bool = False) -> bytes:
    """Value bytes of obj (Python codec); TypeError names serializer= unless allow_pickle."""

def decode_value(data: _Buffer, /, allow_pickle: bool = False) -> Any:
    """Decodes encode_value's bytes; tcache.errors.DecodeError on malformed data."""

def python_fingerprint() -> int:
    """The fingerprint stored with Python-codec values (no C++ type has it)."""

def cpp_encode(obj: object, spec: _Spec) -> bytes:
    """tcache::Codec's bytes of obj as the C++ type spec describes."""

def cpp_encode_args(args: tuple[Any, ...], specs: Sequence[_Spec]) -> bytes:
    """The bytes the C++ decorators hash for a call with these arguments."""

def cpp_decode(data: bytes, spec: _Spec) -> Any:
    """tcache::decode<T>(data) for the spec; tcache.errors.DecodeError on malformed data."""

def cpp_fingerprint(spec: _Spec) -> int:
    """tcache::type_fingerprint<T>() of the spec's C++ type."""
