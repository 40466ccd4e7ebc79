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
