// The C++-compatible codec: tcache::Codec's bytes (include/tcache/codec.h)
// and type_fingerprint<T>() for the C++ types a CppSpec describes, so that
// Python and C++ functions of one name share entries.
//
// The bytes are written with codec.h's own helpers (detail::put_uint and
// friends), so the layout of each type is the C++ one by construction:
// int64 and double 8 bytes, bool 1, string and vector a u64 length, optional
// a tag byte, tuple its members back to back, map a u64 count and its pairs
// in std::map order (std::less of the key type, which compare_encoded below
// computes on the encoded keys).

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "codec.h"
#include "tcache/codec.h"

namespace tcache::py {
namespace pyb = pybind11;

namespace {

using Kind = CppSpec::Kind;

const char* cpp_name(Kind k) {
  switch (k) {
    case Kind::int64:
      return "std::int64_t";
    case Kind::float64:
      return "double";
    case Kind::boolean:
      return "bool";
    case Kind::string:
      return "std::string";
    case Kind::bytes:
      return "std::vector<std::uint8_t>";
    case Kind::optional:
      return "std::optional";
    case Kind::vector:
      return "std::vector";
    case Kind::tuple:
      return "std::tuple";
    case Kind::map:
      return "std::map";
  }
  return "?";
}

std::string py_type_name(pyb::handle obj) {
  return pyb::str(pyb::handle(reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()))).attr("__name__"))
      .cast<std::string>();
}

[[noreturn]] void wrong_type(pyb::handle obj, const char* expected, Kind k) {
  throw pyb::type_error("tcache: expected " + std::string(expected) + " for C++ " + cpp_name(k) +
                        ", got '" + py_type_name(obj) + "'");
}

CppSpec parse(pyb::handle spec, int depth) {
  if (depth > kMaxDepth) {
    throw pyb::value_error("tcache: a C++ type spec nested deeper than " +
                           std::to_string(kMaxDepth) + " levels");
  }
  if (!PyTuple_Check(spec.ptr()) || PyTuple_GET_SIZE(spec.ptr()) == 0 ||
      !PyUnicode_Check(PyTuple_GET_ITEM(spec.ptr(), 0))) {
    throw pyb::value_error(
        "tcache: a C++ type spec is a tuple whose first item names the type, e.g. (\"int64\",) "
        "or (\"vector\", (\"string\",)); got " +
        pyb::repr(spec).cast<std::string>());
  }
  const pyb::tuple t = pyb::reinterpret_borrow<pyb::tuple>(spec);
  const std::string name = t[0].cast<std::string>();
  static constexpr std::pair<const char*, Kind> kNames[] = {
      {"int64", Kind::int64},   {"double", Kind::float64}, {"bool", Kind::boolean},
      {"string", Kind::string}, {"bytes", Kind::bytes},    {"optional", Kind::optional},
      {"vector", Kind::vector}, {"tuple", Kind::tuple},    {"map", Kind::map}};
  const auto* it = std::find_if(std::begin(kNames), std::end(kNames),
                                [&](const auto& n) { return name == n.first; });
  if (it == std::end(kNames)) {
    throw pyb::value_error("tcache: unknown C++ type '" + name +
                           "' in a type spec (known: int64, double, bool, string, bytes, "
                           "optional, vector, tuple, map)");
  }
  CppSpec s;
  s.kind = it->second;
  const std::size_t parts = t.size() - 1;
  const std::size_t want = s.kind == Kind::optional || s.kind == Kind::vector ? 1
                           : s.kind == Kind::map                              ? 2
                           : s.kind == Kind::tuple                            ? parts
                                                                              : 0;
  if (parts != want) {
    throw pyb::value_error("tcache: C++ type spec '" + name + "' takes " + std::to_string(want) +
                           " element type(s), got " + std::to_string(parts));
  }
  for (std::size_t i = 1; i < t.size(); ++i) s.parts.push_back(parse(t[i], depth + 1));
  return s;
}

// ---- std::less of the C++ type, on encoded bytes ------------------------------

int three_way(auto a, auto b) { return a < b ? -1 : b < a ? 1 : 0; }

std::string_view get_string(std::string_view& in) {
  const auto n = detail::get_uint<std::uint64_t>(in, "string length");
  detail::need(in, n, "string");
  const std::string_view s = in.substr(0, n);
  in.remove_prefix(n);
  return s;
}

// Compares the values at the front of a and b, both encodings of spec, as
// operator< of the C++ type does, consuming them (up to where they differ).
int compare_encoded(const CppSpec& spec, std::string_view& a, std::string_view& b) {
  switch (spec.kind) {
    case Kind::int64:
      return three_way(static_cast<std::int64_t>(detail::get_uint<std::uint64_t>(a, "int")),
                       static_cast<std::int64_t>(detail::get_uint<std::uint64_t>(b, "int")));
    case Kind::float64: {
      const double x = Codec<double>::decode(a);
      return three_way(x, Codec<double>::decode(b));
    }
    case Kind::boolean: {
      const int x = detail::get_uint<std::uint8_t>(a, "bool");
      return three_way(x, static_cast<int>(detail::get_uint<std::uint8_t>(b, "bool")));
    }
    case Kind::string:
    case Kind::bytes: {
      // char_traits<char>::lt compares as unsigned char: memcmp order.
      const std::string_view x = get_string(a);
      const std::string_view y = get_string(b);
      return three_way(x.compare(y), 0);
    }
    case Kind::optional: {
      const int x = detail::get_uint<std::uint8_t>(a, "optional tag");
      const int y = detail::get_uint<std::uint8_t>(b, "optional tag");
      if (x != y || x == 0) return three_way(x, y);
      return compare_encoded(spec.parts[0], a, b);
    }
    case Kind::tuple:
      for (const auto& part : spec.parts) {
        if (const int c = compare_encoded(part, a, b)) return c;
      }
      return 0;
    case Kind::vector:
    case Kind::map: {
      const auto na = detail::get_uint<std::uint64_t>(a, "count");
      const auto nb = detail::get_uint<std::uint64_t>(b, "count");
      for (std::uint64_t i = 0; i < std::min(na, nb); ++i) {
        for (const auto& part : spec.parts) {
          if (const int c = compare_encoded(part, a, b)) return c;
        }
      }
      return three_way(na, nb);
    }
  }
  return 0;
}

int compare_bytes(const CppSpec& spec, std::string_view a, std::string_view b) {
  return compare_encoded(spec, a, b);
}

// ---- encoding -----------------------------------------------------------------

void encode(pyb::handle obj, const CppSpec& spec, std::string& out);

void encode_items(pyb::handle obj, const CppSpec& spec, std::string& out) {
  if (!PyList_Check(obj.ptr()) && !PyTuple_Check(obj.ptr())) {
    wrong_type(obj, "a list or tuple", spec.kind);
  }
  pyb::object seq = pyb::reinterpret_steal<pyb::object>(PySequence_Fast(obj.ptr(), "sequence"));
  if (!seq) throw pyb::error_already_set();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  if (spec.kind == Kind::vector) {
    detail::put_len(static_cast<std::size_t>(n), out);
    for (Py_ssize_t i = 0; i < n; ++i)
      encode(PySequence_Fast_GET_ITEM(seq.ptr(), i), spec.parts[0], out);
    return;
  }
  if (static_cast<std::size_t>(n) != spec.parts.size()) {
    throw pyb::type_error("tcache: expected a tuple of " + std::to_string(spec.parts.size()) +
                          " items for a C++ std::tuple, got " + std::to_string(n));
  }
  for (Py_ssize_t i = 0; i < n; ++i)
    encode(PySequence_Fast_GET_ITEM(seq.ptr(), i), spec.parts[i], out);
}

void encode_map(pyb::handle obj, const CppSpec& spec, std::string& out) {
  if (!PyDict_Check(obj.ptr())) wrong_type(obj, "a dict", spec.kind);
  struct Entry {
    std::string key;
    std::string value;
  };
  std::vector<Entry> entries;
  pyb::list items = pyb::reinterpret_steal<pyb::list>(PyDict_Items(obj.ptr()));
  if (!items) throw pyb::error_already_set();
  entries.reserve(items.size());
  for (pyb::handle kv : items) {
    Entry e;
    pyb::handle k = PyTuple_GET_ITEM(kv.ptr(), 0);
    if (spec.parts[0].kind == Kind::float64 && PyFloat_Check(k.ptr()) &&
        std::isnan(PyFloat_AS_DOUBLE(k.ptr()))) {
      throw pyb::value_error("tcache: a NaN key cannot be in a C++ std::map");
    }
    encode(k, spec.parts[0], e.key);
    encode(PyTuple_GET_ITEM(kv.ptr(), 1), spec.parts[1], e.value);
    entries.push_back(std::move(e));
  }
  const CppSpec& key = spec.parts[0];
  std::sort(entries.begin(), entries.end(),
            [&](const Entry& x, const Entry& y) { return compare_bytes(key, x.key, y.key) < 0; });
  for (std::size_t i = 1; i < entries.size(); ++i) {
    if (compare_bytes(key, entries[i - 1].key, entries[i].key) == 0) {
      throw pyb::value_error(
          "tcache: two keys of the dict are one key as C++ " + std::string(cpp_name(key.kind)) +
          " (e.g. 1 and True, or 0.0 and -0.0): a C++ std::map cannot hold both");
    }
  }
  detail::put_len(entries.size(), out);
  for (const auto& e : entries) {
    out += e.key;
    out += e.value;
  }
}

void encode(pyb::handle obj, const CppSpec& spec, std::string& out) {
  PyObject* o = obj.ptr();
  switch (spec.kind) {
    case Kind::int64: {
      if (!PyIndex_Check(o) || PyFloat_Check(o)) wrong_type(obj, "an int", spec.kind);
      pyb::object i = pyb::reinterpret_steal<pyb::object>(PyNumber_Index(o));
      if (!i) throw pyb::error_already_set();
      int overflow = 0;
      const long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
      if (overflow != 0) {
        throw pyb::value_error("tcache: " + pyb::repr(obj).cast<std::string>() +
                               " is out of range for C++ std::int64_t");
      }
      if (v == -1 && PyErr_Occurred()) throw pyb::error_already_set();
      Codec<std::int64_t>::encode(v, out);
      return;
    }
    case Kind::float64: {
      if (!PyFloat_Check(o) && !PyLong_Check(o)) wrong_type(obj, "a float or int", spec.kind);
      const double d = PyFloat_AsDouble(o);
      if (d == -1.0 && PyErr_Occurred()) throw pyb::error_already_set();
      Codec<double>::encode(d, out);
      return;
    }
    case Kind::boolean:
      if (!PyBool_Check(o)) wrong_type(obj, "a bool", spec.kind);
      Codec<bool>::encode(o == Py_True, out);
      return;
    case Kind::string: {
      if (!PyUnicode_Check(o)) wrong_type(obj, "a str", spec.kind);
      Py_ssize_t n = 0;
      const char* p = PyUnicode_AsUTF8AndSize(o, &n);
      if (p == nullptr) throw pyb::error_already_set();
      Codec<std::string_view>::encode(std::string_view(p, static_cast<std::size_t>(n)), out);
      return;
    }
    case Kind::bytes: {
      if (PyUnicode_Check(o) || !PyObject_CheckBuffer(o)) {
        wrong_type(obj, "bytes (or a bytes-like object)", spec.kind);
      }
      pyb::buffer_info b = pyb::reinterpret_borrow<pyb::buffer>(obj).request();
      if (b.ndim > 1 || (b.ndim == 1 && b.strides[0] != b.itemsize)) {
        throw pyb::type_error("tcache: expected contiguous bytes for C++ " +
                              std::string(cpp_name(spec.kind)));
      }
      const std::size_t n = static_cast<std::size_t>(b.size * b.itemsize);
      detail::put_len(n, out);
      out.append(static_cast<const char*>(b.ptr), n);
      return;
    }
    case Kind::optional:
      Codec<bool>::encode(o != Py_None, out);  // the tag byte
      if (o != Py_None) encode(obj, spec.parts[0], out);
      return;
    case Kind::vector:
    case Kind::tuple:
      encode_items(obj, spec, out);
      return;
    case Kind::map:
      encode_map(obj, spec, out);
      return;
  }
}

// ---- decoding -----------------------------------------------------------------

// A lower bound on the encoded size of a value of spec (detail::min_size_v
// of the C++ type), at least 1: bounds the element counts decode accepts.
std::size_t min_size(const CppSpec& spec) {
  switch (spec.kind) {
    case Kind::boolean:
    case Kind::optional:
      return 1;
    case Kind::tuple: {
      std::size_t n = 0;
      for (const auto& part : spec.parts) n += min_size(part);
      return std::max<std::size_t>(n, 1);
    }
    default:
      return 8;  // int64, double, and the u64 length of string, bytes, vector, map
  }
}

pyb::object steal(PyObject* o) {
  if (o == nullptr) throw pyb::error_already_set();
  return pyb::reinterpret_steal<pyb::object>(o);
}

// `hashable`: the value is (part of) a map key, so a vector becomes a tuple
// (which cpp_encode takes for a vector too).
pyb::object decode(std::string_view& in, const CppSpec& spec, bool hashable) {
  switch (spec.kind) {
    case Kind::int64:
      return steal(PyLong_FromLongLong(Codec<std::int64_t>::decode(in)));
    case Kind::float64:
      return steal(PyFloat_FromDouble(Codec<double>::decode(in)));
    case Kind::boolean:
      return pyb::bool_(Codec<bool>::decode(in));
    case Kind::string: {
      const std::string_view s = get_string(in);
      PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr);
      if (o == nullptr) {
        PyErr_Clear();
        detail::decode_fail("a C++ std::string that is not UTF-8 cannot be a Python str");
      }
      return pyb::reinterpret_steal<pyb::object>(o);
    }
    case Kind::bytes: {
      const std::string_view s = get_string(in);
      return steal(PyBytes_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size())));
    }
    case Kind::optional: {
      const auto tag = detail::get_uint<std::uint8_t>(in, "optional tag");
      if (tag > 1) detail::decode_fail("optional tag is " + std::to_string(tag) + ", not 0 or 1");
      return tag == 0 ? pyb::none() : decode(in, spec.parts[0], hashable);
    }
    case Kind::tuple: {
      pyb::tuple t(spec.parts.size());
      for (std::size_t i = 0; i < spec.parts.size(); ++i) {
        PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i),
                         decode(in, spec.parts[i], hashable).release().ptr());
      }
      return t;
    }
    case Kind::vector: {
      const std::size_t n = detail::get_count(in, min_size(spec.parts[0]), "vector");
      pyb::object seq = steal(hashable ? PyTuple_New(static_cast<Py_ssize_t>(n))
                                       : PyList_New(static_cast<Py_ssize_t>(n)));
      for (std::size_t i = 0; i < n; ++i) {
        PyObject* e = decode(in, spec.parts[0], hashable).release().ptr();
        if (hashable) {
          PyTuple_SET_ITEM(seq.ptr(), static_cast<Py_ssize_t>(i), e);
        } else {
          PyList_SET_ITEM(seq.ptr(), static_cast<Py_ssize_t>(i), e);
        }
      }
      return seq;
    }
    case Kind::map: {
      if (hashable) detail::decode_fail("a std::map inside a map key has no Python dict key");
      const std::size_t n =
          detail::get_count(in, min_size(spec.parts[0]) + min_size(spec.parts[1]), "map");
      pyb::dict d;
      std::string_view prev;
      for (std::size_t i = 0; i < n; ++i) {
        const char* start = in.data();
        pyb::object k = decode(in, spec.parts[0], true);
        const std::string_view key(start, static_cast<std::size_t>(in.data() - start));
        if (i > 0 && compare_bytes(spec.parts[0], prev, key) >= 0) {
          detail::decode_fail("map keys are not strictly increasing");
        }
        prev = key;
        pyb::object v = decode(in, spec.parts[1], false);
        if (PyDict_SetItem(d.ptr(), k.ptr(), v.ptr()) != 0) throw pyb::error_already_set();
      }
      return d;
    }
  }
  return pyb::none();
}

// ---- fingerprint: detail::Shape<T>::fingerprint() -------------------------------

std::uint64_t composite(std::string_view kind, const std::vector<std::uint64_t>& parts) {
  using detail::shape_mix;
  std::uint64_t h = shape_mix(shape_mix(shape_mix(detail::kShapeBasis, kind), std::uint64_t{0}),
                              std::uint64_t{parts.size()});
  for (const std::uint64_t p : parts) h = shape_mix(h, p);
  return h;
}

std::uint64_t int_shape(std::uint64_t size, bool is_signed) {
  using detail::shape_mix;
  return shape_mix(shape_mix(shape_mix(detail::kShapeBasis, "int"), size),
                   std::uint64_t{is_signed});
}

}  // namespace

CppSpec parse_spec(pyb::handle spec) { return parse(spec, 0); }

void cpp_encode(pyb::handle obj, const CppSpec& spec, std::string& out) { encode(obj, spec, out); }

void cpp_encode_args(pyb::handle args_tuple, const std::vector<CppSpec>& specs, std::string& out) {
  if (!PyTuple_Check(args_tuple.ptr())) wrong_type(args_tuple, "a tuple of arguments", Kind::tuple);
  const auto n = static_cast<std::size_t>(PyTuple_GET_SIZE(args_tuple.ptr()));
  if (n != specs.size()) {
    throw pyb::type_error("tcache: " + std::to_string(n) + " arguments for a C++ signature of " +
                          std::to_string(specs.size()));
  }
  for (std::size_t i = 0; i < n; ++i) {
    encode(PyTuple_GET_ITEM(args_tuple.ptr(), static_cast<Py_ssize_t>(i)), specs[i], out);
  }
}

pyb::object cpp_decode(std::string_view bytes, const CppSpec& spec) {
  pyb::object v = decode(bytes, spec, false);
  if (!bytes.empty()) {
    detail::decode_fail(std::to_string(bytes.size()) + " trailing bytes after the value");
  }
  return v;
}

std::uint64_t cpp_fingerprint(const CppSpec& spec) {
  using detail::shape_mix;
  std::vector<std::uint64_t> parts;
  for (const auto& p : spec.parts) parts.push_back(cpp_fingerprint(p));
  switch (spec.kind) {
    case Kind::int64:
      return int_shape(8, true);
    case Kind::float64:
      return shape_mix(shape_mix(detail::kShapeBasis, "float"), std::uint64_t{8});
    case Kind::boolean:
      return shape_mix(detail::kShapeBasis, "bool");
    case Kind::string:
      return composite("string", parts);
    case Kind::bytes:
      return composite("vector", {int_shape(1, false)});
    case Kind::optional:
      return composite("optional", parts);
    case Kind::vector:
      return composite("vector", parts);
    case Kind::tuple:
      return composite("product", parts);
    case Kind::map:
      return composite("map", parts);
  }
  return 0;
}

}  // namespace tcache::py
