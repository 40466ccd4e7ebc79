"""tcache's exceptions: one base class and one subclass per C++ ``tcache::Errc``.

Every error the compiled core raises is one of these, with the C++ message
(which says what to do). ``CacheError.code`` is the Errc's stable name, the
one ``tcache-tool --json`` prints (e.g. ``"corrupt_file"``). A miss is never
an error.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CorruptFileError",
    "VersionMismatchError",
    "UnsafePermissionsError",
    "ConfigurationError",
    "KeyTooLargeError",
    "ValueTooLargeError",
    "NoSpaceError",
    "IoError",
    "ReadOnlyError",
    "NotACacheFileError",
    "DecodeError",
    "UnavailableError",
    "BusyError",
    "ForkedError",
    "FileReplacedError",
    "UnsupportedFileSystemError",
    "error_class",
]


class CacheError(Exception):
    """Base of every tcache error. ``code``: the C++ Errc name."""

    code: str = "unknown"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CorruptFileError(CacheError):
    """The file's structures fail a check: run verify/repair, or delete it."""

    code = "corrupt_file"


class VersionMismatchError(CacheError):
    """The file was written by another format version or an incompatible build."""

    code = "version_mismatch"


class UnsafePermissionsError(CacheError):
    """A group/other-writable or foreign-owned file or directory."""

    code = "unsafe_permissions"


class ConfigurationError(CacheError, ValueError):
    """An option or argument is out of range (C++ Errc::invalid_option)."""

    code = "invalid_option"


class KeyTooLargeError(CacheError):
    """A key longer than the store accepts (16 KiB)."""

    code = "key_too_large"


class ValueTooLargeError(CacheError):
    """A value longer than the store accepts."""

    code = "value_too_large"


class NoSpaceError(CacheError):
    """No room even after eviction (disk full, size class starved)."""

    code = "no_space"


class IoError(CacheError):
    """A system call failed; the message carries the errno text."""

    code = "io_error"


class ReadOnlyError(CacheError):
    """A write through a store opened read_only."""

    code = "read_only"


class NotACacheFileError(CacheError):
    """The file does not start with tcache's magic."""

    code = "not_a_cache_file"


class DecodeError(CacheError):
    """Stored bytes are truncated or malformed for the type asked for."""

    code = "decode_error"


class UnavailableError(CacheError):
    """A server (Redis) cannot be reached, timed out or refused to serve."""

    code = "unavailable"


class BusyError(CacheError):
    """Another process holds what the call needs (a compaction in progress)."""

    code = "busy"


class ForkedError(CacheError):
    """A store used in a child process after fork() (the package reopens it)."""

    code = "forked"


class FileReplacedError(CacheError):
    """The file was compacted under another name; open it by that name."""

    code = "file_replaced"


class UnsupportedFileSystemError(CacheError):
    """The file system lacks fallocate(2): move the file elsewhere."""

    code = "unsupported_file_system"


_BY_CODE: dict[str, type[CacheError]] = {
    cls.code: cls
    for cls in (
        CorruptFileError,
        VersionMismatchError,
        UnsafePermissionsError,
        ConfigurationError,
        KeyTooLargeError,
        ValueTooLargeError,
        NoSpaceError,
        IoError,
        ReadOnlyError,
        NotACacheFileError,
        DecodeError,
        UnavailableError,
        BusyError,
        ForkedError,
        FileReplacedError,
        UnsupportedFileSystemError,
    )
}


def error_class(code: str) -> type[CacheError]:
    """The class of an Errc name (``CacheError`` for a name it does not know)."""
    return _BY_CODE.get(code, CacheError)
