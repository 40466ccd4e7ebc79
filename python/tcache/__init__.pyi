# Type stubs of the tcache package: decorated functions keep their parameters
# (ParamSpec) and return type; acache's wrapper returns an awaitable.
import os
from contextlib import AbstractContextManager
from typing import (Any, Awaitable, Callable, Coroutine, Generic, Literal, ParamSpec, Protocol,
                    TypeVar, overload)

from ._tcache import Store as Store, compact as compact
from .errors import (BusyError as BusyError, CacheError as CacheError,
                     ConfigurationError as ConfigurationError,
                     CorruptFileError as CorruptFileError, DecodeError as DecodeError,
                     FileReplacedError as FileReplacedError, ForkedError as ForkedError,
                     IoError as IoError, KeyTooLargeError as KeyTooLargeError,
                     NoSpaceError as NoSpaceError, NotACacheFileError as NotACacheFileError,
                     ReadOnlyError as ReadOnlyError, UnavailableError as UnavailableError,
                     UnsafePermissionsError as UnsafePermissionsError,
                     UnsupportedFileSystemError as UnsupportedFileSystemError,
                     ValueTooLargeError as ValueTooLargeError,
                     VersionMismatchError as VersionMismatchError)

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

Policy = Literal["lru", "lfu", "fifo"]
KeyFunction = Callable[..., Any]
Ignore = tuple[str, ...] | str


class Serializer(Protocol):
    def dumps(self, value: Any, /) -> bytes: ...
    def loads(self, data: bytes, /) -> Any: ...


class CacheInfo(dict[str, Any]):
    hits: int
    misses: int
    maxsize: int
    currsize: int
    backend: str


class CachedFunction(Generic[P, R_co]):
    __wrapped__: Callable[P, R_co]
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_clear(self) -> int: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...


class AsyncCachedFunction(Generic[P, R_co]):
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_clear(self) -> int: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...


@overload
def mcache(func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def mcache(*, maxsize: int | None = ..., ttl: float | None = ..., policy: Policy = ...,
           key: KeyFunction | None = ..., ignore: Ignore = ...,
           name: str | None = ...) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


@overload
def bcache(func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def bcache(*, name: str | None = ..., version: int | str | None = ...,
           folder_name: str | os.PathLike[str] | None = ..., path: str | os.PathLike[str] | None = ...,
           ttl: float | None = ..., maxsize: int | None = ..., remote: str | None = ...,
           key: KeyFunction | None = ..., ignore: Ignore = ...,
           serializer: Literal["pickle"] | Serializer | None = ..., secure: bool = ...,
           lease_timeout: float | None = ..., capacity_bytes: int | None = ...) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


@overload
def fcache(func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def fcache(*, name: str | None = ..., version: int | str | None = ...,
           folder_name: str | os.PathLike[str] | None = ..., path: str | os.PathLike[str] | None = ...,
           ttl: float | None = ..., compress: bool = ..., key: KeyFunction | None = ...,
           ignore: Ignore = ..., serializer: Literal["pickle"] | Serializer | None = ...,
           secure: bool = ...,
           lease_timeout: float | None = ..., capacity_bytes: int | None = ...) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


@overload
def ucache(func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def ucache(*, name: str | None = ..., version: int | str | None = ..., maxsize: int | None = ...,
           ttl: float | None = ..., folder_name: str | os.PathLike[str] | None = ...,
           preferred_engine: str | None = ..., backend: str | None = ...,
           path: str | os.PathLike[str] | None = ..., key: KeyFunction | None = ...,
           ignore: Ignore = ..., serializer: Literal["pickle"] | Serializer | None = ...,
           secure: bool = ...,
           lease_timeout: float | None = ..., capacity_bytes: int | None = ...) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


@overload
def acache(func: Callable[P, Awaitable[R]], /) -> AsyncCachedFunction[P, R]: ...
@overload
def acache(func: Callable[P, R], /) -> AsyncCachedFunction[P, R]: ...
@overload
def acache(*, name: str | None = ..., version: int | str | None = ..., maxsize: int | None = ...,
           ttl: float | None = ..., folder_name: str | os.PathLike[str] | None = ...,
           preferred_engine: str | None = ..., backend: str | None = ...,
           path: str | os.PathLike[str] | None = ..., key: KeyFunction | None = ...,
           ignore: Ignore = ..., serializer: Literal["pickle"] | Serializer | None = ...,
           secure: bool = ..., lease_timeout: float | None = ...,
           capacity_bytes: int | None = ...) -> Callable[[Callable[P, Awaitable[R]]], AsyncCachedFunction[P, R]]: ...


def config(dir: str | os.PathLike[str] | None = ..., default_ttl: float | None = ...,
           disable: bool | None = ...,
           backend: str | None = ...) -> AbstractContextManager[dict[str, Any]]: ...
def get_stats() -> dict[str, dict[str, Any]]: ...
def clear_cache(name: str | None = ...) -> int: ...
def get_cache_path(folder_name: str | os.PathLike[str] | None = ...) -> str: ...
def create_cache_config(**options: Any) -> dict[str, Any]: ...


class CacheContext:
    engine_name: str
    ttl: float | None
    def __init__(self, engine_name: Literal["memory", "file"] = ..., *, maxsize: int | None = ...,
                 ttl: float | None = ..., policy: Policy = ..., path: str | None = ...,
                 folder_name: str | None = ..., name: str = ...,
                 serializer: Literal["pickle"] | None = ...) -> None: ...
    def __enter__(self) -> CacheContext: ...
    def __exit__(self, *exc: object) -> None: ...
    def close(self) -> None: ...
    def set(self, key: Any, value: Any, ttl: float | None = ...) -> None: ...
    def get(self, key: Any, default: Any = ...) -> Any: ...
    def delete(self, key: Any) -> bool: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
