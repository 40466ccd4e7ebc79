"""tcache.errors: one class per C++ Errc, raised with the C++ message."""

from __future__ import annotations

import os
import pathlib

import pytest

from tcache import errors
from tcache._tcache import Store, push_config

# Every tcache::Errc (include/tcache/error.h) by its stable name.
ERRC_NAMES = {
    "corrupt_file": "CorruptFileError",
    "version_mismatch": "VersionMismatchError",
    "unsafe_permissions": "UnsafePermissionsError",
    "invalid_option": "ConfigurationError",
    "key_too_large": "KeyTooLargeError",
    "value_too_large": "ValueTooLargeError",
    "no_space": "NoSpaceError",
    "io_error": "IoError",
    "read_only": "ReadOnlyError",
    "not_a_cache_file": "NotACacheFileError",
    "decode_error": "DecodeError",
    "unavailable": "UnavailableError",
    "busy": "BusyError",
    "forked": "ForkedError",
    "file_replaced": "FileReplacedError",
    "unsupported_file_system": "UnsupportedFileSystemError",
}


@pytest.mark.parametrize("code,class_name", sorted(ERRC_NAMES.items()))
def test_every_errc_has_its_class(code: str, class_name: str) -> None:
    cls = getattr(errors, class_name)
    assert errors.error_class(code) is cls
    assert cls.code == code
    assert issubclass(cls, errors.CacheError)
    assert class_name in errors.__all__


def test_unknown_code_is_the_base_class() -> None:
    assert errors.error_class("no_such_code") is errors.CacheError
    e = errors.CacheError("x", "no_such_code")
    assert e.code == "no_such_code" and str(e) == "x"


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        Store("c.tcache", capacity_bytes=5)
    assert type(info.value) is errors.ConfigurationError
    assert info.value.code == "invalid_option"
    # The C++ message, which says what to do.
    assert "1 MiB" in str(info.value) and str(info.value).startswith("tcache: ")


def test_not_a_cache_file(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "junk.tcache"
    p.write_bytes(b"this is not a cache file" * 1000)
    p.chmod(0o600)
    with pytest.raises(errors.NotACacheFileError) as info:
        Store(p)
    assert info.value.code == "not_a_cache_file"
    assert str(p) in str(info.value)


def test_unsafe_permissions(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.tcache"
    Store(p, capacity_bytes=1 << 20).close()
    p.chmod(0o666)
    with pytest.raises(errors.UnsafePermissionsError) as info:
        Store(p)
    assert "allow_shared_access" in str(info.value) or "chmod" in str(info.value)
    Store(p, allow_shared_access=True).close()  # what the message offers


def test_missing_file_without_create_is_io_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.IoError) as info:
        Store(tmp_path / "absent.tcache", create_if_missing=False)
    assert "absent.tcache" in str(info.value)


def test_read_only(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.tcache"
    with Store(p, capacity_bytes=1 << 20) as s:
        s["k"] = b"v"
    ro = Store(p, read_only=True)
    assert ro["k"] == b"v"
    with pytest.raises(errors.ReadOnlyError):
        ro["k"] = b"w"
    with pytest.raises(errors.ReadOnlyError):
        ro.erase("k")


def test_key_too_large(tmp_path: pathlib.Path) -> None:
    s = Store(tmp_path / "c.tcache", capacity_bytes=1 << 20)
    with pytest.raises(errors.KeyTooLargeError) as info:
        s.put(b"k" * (16 * 1024 + 1), b"v")
    assert info.value.code == "key_too_large"


def test_value_too_large(tmp_path: pathlib.Path) -> None:
    s = Store(tmp_path / "c.tcache", capacity_bytes=1 << 20)
    with pytest.raises(errors.ValueTooLargeError):
        s.put("k", b"x" * (s.max_value_bytes + 1))


def test_config_errors_are_configuration_errors() -> None:
    with pytest.raises(errors.ConfigurationError):
        push_config(default_ttl=-1.0)
    with pytest.raises(errors.ConfigurationError):
        push_config(dir="")


def test_bad_env_var_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from tcache._tcache import current_config

    monkeypatch.setenv("TCACHE_DEFAULT_TTL", "soon")
    with pytest.raises(errors.ConfigurationError) as info:
        current_config()
    assert "TCACHE_DEFAULT_TTL" in str(info.value)


def test_errors_pickle_and_keep_their_code() -> None:
    import pickle

    e = errors.NoSpaceError("tcache: disk full", "no_space")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is errors.NoSpaceError and back.code == "no_space"
    assert os.fspath(str(back)) == "tcache: disk full"
