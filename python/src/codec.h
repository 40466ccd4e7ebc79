// The codecs of the Python extension: how Python arguments become key bytes
// and Python results become value bytes.
//
// Two families:
//
//  - The Python codec (python/src/codec_py.cc): self-describing, tagged
//    bytes for the builtin and standard types listed below. Keys are
//    canonical (the same value gives the same bytes in every process and
//    interpreter run: never hash(), repr() or id()); values decode back to
//    equal objects. Its values carry python_fingerprint(), which no C++ type
//    has, so a C++ reader never takes them for its own.
//  - The C++-compatible codec (python/src/codec_cpp.cc): exactly
//    tcache::Codec's bytes (include/tcache/codec.h) for a type described by a
//    CppSpec, and type_fingerprint<T>() of that type, so that a Python and a
//    C++ function of the same name share entries.
//
// Thread safety: every function here must be called with the GIL held (they
// create and inspect Python objects); they keep no mutable state of their own
// beyond caches of imported classes, filled under the GIL.

#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tcache::py {

// ---- The Python codec ----------------------------------------------------

// Appends the canonical key bytes of obj. Types: None, bool, int (any size),
// float (every NaN alike; -0.0 distinct from 0.0), complex, str, bytes,
// bytearray, tuple, list, dict (order-independent), set, frozenset, Enum
// members, datetime (naive and aware differ), date, time, timedelta,
// Decimal (equal values, e.g. 1.0 and 1.00, are one key; the sign of zero
// counts, as for floats), pathlib paths,
// dataclass instances (class + compared fields), NamedTuples, numpy arrays
// (dtype, shape, C-order bytes) and numpy scalars, and any object with a
// __tcache_key__() method (class + the encoding of what it returns, which
// takes precedence over the rules above). Values of different types never
// share bytes ([1, 2] vs (1, 2); 1 vs True vs 1.0). Throws
// pybind11::type_error naming the type and saying to pass key= or ignore=,
// and pybind11::value_error for nesting deeper than kMaxDepth.
void encode_key(pybind11::handle obj, std::string& out);

// Appends the value bytes of obj: the types above (numpy arrays copied in
// bulk) except __tcache_key__ objects; subclasses of builtins other than
// Enum, NamedTuple, numpy and pathlib types are not taken for their base.
// Any other object is pickled (inline, for that object only) when
// allow_pickle, else a pybind11::type_error naming serializer= is thrown.
void encode_value(pybind11::handle obj, bool allow_pickle, std::string& out);

// Decodes bytes written by encode_value (all of them). Throws
// tcache::Error(Errc::decode_error) for any malformed input (lengths are
// checked against the bytes that remain, nesting is bounded), for a pickled
// part when !allow_pickle, and for a class (Enum, dataclass, NamedTuple)
// that is not loaded in this interpreter (decoding never imports a module
// of a class; it may import decimal, pathlib, zoneinfo, pickle and numpy).
// Dataclasses are rebuilt field by field (__new__, then object.__setattr__),
// without running __init__ or __post_init__; a class whose fields changed
// is a decode error.
pybind11::object decode_value(std::string_view bytes, bool allow_pickle);

// The fingerprint the decorators store with Python-codec values.
std::uint64_t python_fingerprint();

// The deepest nesting of containers either codec accepts.
inline constexpr int kMaxDepth = 200;

// ---- The C++-compatible codec ---------------------------------------------

// A C++ type, parsed from a Python tuple tree:
//   ("int64",) ("double",) ("bool",) ("string",) ("bytes",)
//   ("optional", s) ("vector", s) ("tuple", s1, s2, ...) ("map", k, v)
// standing for std::int64_t, double, bool, std::string,
// std::vector<std::uint8_t>, std::optional, std::vector, std::tuple, std::map.
struct CppSpec {
  enum class Kind : std::uint8_t {
    int64,
    float64,
    boolean,
    string,
    bytes,
    optional,
    vector,
    tuple,
    map
  };
  Kind kind = Kind::int64;
  std::vector<CppSpec> parts;  // optional, vector: 1; tuple: any number; map: 2
};

// Throws pybind11::value_error for anything but a well-formed spec (nesting
// at most kMaxDepth).
CppSpec parse_spec(pybind11::handle spec);

// Appends tcache::Codec<T>::encode of obj for the T that spec describes.
// Accepts: int64 an int (or __index__) in range; double a float or int; bool
// a bool; string a str (UTF-8); bytes a bytes-like object; optional None or
// the value; vector a list or tuple; tuple a tuple or list of exactly its
// arity; map a dict (written in std::map order). Throws pybind11::type_error
// or pybind11::value_error (out of range, NaN map key, keys that collide as
// the C++ type) saying which.
void cpp_encode(pybind11::handle obj, const CppSpec& spec, std::string& out);

// The arguments of a call, as the C++ decorators encode A... for make_key
// (tcache::encode_args): each argument by its spec, concatenated. Throws as
// cpp_encode, and pybind11::type_error if the counts differ.
void cpp_encode_args(pybind11::handle args_tuple, const std::vector<CppSpec>& specs,
                     std::string& out);

// tcache::decode<T>(bytes) as a Python object (int, float, bool, str, bytes,
// None or the value, list, tuple, dict). Throws tcache::Error(decode_error)
// where tcache::decode<T> would, and for a string that is not UTF-8.
pybind11::object cpp_decode(std::string_view bytes, const CppSpec& spec);

// == tcache::type_fingerprint<T>() for the T that spec describes.
std::uint64_t cpp_fingerprint(const CppSpec& spec);

}  // namespace tcache::py
