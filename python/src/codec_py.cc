// The Python codec: self-describing, tagged bytes for keys (canonical) and
// values (decodable). codec.h lists the types; the bytes are below.
//
// Format (integers little-endian; "varint" is unsigned LEB128, at most 10
// bytes; "str" is a varint length and UTF-8 bytes). Every value is one tag
// byte and its body; the tags are persisted in caches: DO NOT CHANGE them.
//
//   tag  type            body
//   0    None            -
//   1/2  False/True      -
//   3    int (int64)     8 bytes two's complement
//   4    int (larger)    varint n, n = bit_length // 8 + 1 bytes two's complement
//   5    float           8 bytes IEEE-754 (every NaN 0x7ff8000000000000)
//   6    complex         two floats' bodies
//   7    str             str
//   8    str (lone surrogates) varint n, n bytes UTF-8 with surrogatepass
//   9    bytes           varint n, n bytes
//   10   bytearray       varint n, n bytes
//   11   tuple           varint count, values
//   12   list            varint count, values
//   13   dict            varint count, (key value) pairs; keys: sorted by bytes
//   14   set             varint count, values; keys: sorted by bytes
//   15   frozenset       as set
//   16   Enum member     module str, qualname str, the member's value
//   17   datetime        u16 year, u8 month, day, hour, minute, second,
//                        u32 microsecond, u8 fold, tz
//   18   date            u16 year, u8 month, u8 day
//   19   time            u8 hour, minute, second, u32 microsecond, u8 fold, tz
//   20   timedelta       i32 days, i32 seconds, i32 microseconds
//   21   Decimal         str: str(d) for values; for keys the canonical
//                        sign, digits without trailing zeros and exponent
//   22   pathlib path    str (class name in pathlib), str (the path)
//   23   dataclass       module str, qualname str, varint count, (name str, value)
//   24   NamedTuple      module str, qualname str, varint count, values
//   25   numpy array     str dtype.str, varint ndim, varint dims, varint n, n bytes
//   26   numpy scalar    str dtype.str, varint n, n bytes
//   27   __tcache_key__  (keys only) module str, qualname str, the key's value
//   28   pickle          (values only) varint n, n bytes of pickle protocol 5
//
//   tz: u8 0 naive; 1 datetime.timezone: i32 days, i32 seconds, i32 micro
//   of its offset; 2 zoneinfo.ZoneInfo: str key; 3 (keys only) any other
//   tzinfo: the offset as in 1, then str tzname.

#include <pybind11/pybind11.h>
// CPython's datetime C API (after Python.h, which pybind11 includes).
#include <datetime.h>

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

enum Tag : unsigned char {
  kNone = 0,
  kFalse = 1,
  kTrue = 2,
  kInt = 3,
  kBigInt = 4,
  kFloat = 5,
  kComplex = 6,
  kStr = 7,
  kStrSurrogates = 8,
  kBytes = 9,
  kByteArray = 10,
  kTuple = 11,
  kList = 12,
  kDict = 13,
  kSet = 14,
  kFrozenSet = 15,
  kEnum = 16,
  kDateTime = 17,
  kDate = 18,
  kTime = 19,
  kTimeDelta = 20,
  kDecimal = 21,
  kPath = 22,
  kDataclass = 23,
  kNamedTuple = 24,
  kNdarray = 25,
  kNumpyScalar = 26,
  kKeyed = 27,
  kPickle = 28,
};

enum TzKind : unsigned char { kNaive = 0, kFixed = 1, kZoneInfo = 2, kOtherTz = 3 };

constexpr std::uint64_t kCanonicalNaN = 0x7ff8000000000000ull;

// ---- bytes ------------------------------------------------------------------

void put_varint(std::uint64_t v, std::string& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

std::uint64_t get_varint(std::string_view& in, const char* what) {
  std::uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    const auto b = detail::get_uint<std::uint8_t>(in, what);
    if (shift == 63 && b > 1) break;
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
  detail::decode_fail(std::string(what) + ": malformed varint");
}

// A varint length that the remaining input can hold, each unit at least
// `unit` bytes.
std::size_t get_length(std::string_view& in, std::size_t unit, const char* what) {
  const std::uint64_t n = get_varint(in, what);
  if (n > in.size() / unit) {
    detail::decode_fail(std::string(what) + " claims " + std::to_string(n) + " items but only " +
                        std::to_string(in.size()) + " bytes remain");
  }
  return static_cast<std::size_t>(n);
}

void put_chunk(std::string_view bytes, std::string& out) {
  put_varint(bytes.size(), out);
  out.append(bytes);
}

std::string_view get_chunk(std::string_view& in, const char* what) {
  const std::size_t n = get_length(in, 1, what);
  const std::string_view r = in.substr(0, n);
  in.remove_prefix(n);
  return r;
}

void put_double(double d, std::string& out) {
  detail::put_uint<std::uint64_t>(d != d ? kCanonicalNaN : std::bit_cast<std::uint64_t>(d), out);
}

double get_double(std::string_view& in) {
  return std::bit_cast<double>(detail::get_uint<std::uint64_t>(in, "float"));
}

void put_i32(long v, std::string& out) {
  detail::put_uint<std::uint32_t>(static_cast<std::uint32_t>(v), out);
}
int get_i32(std::string_view& in, const char* what) {
  return static_cast<std::int32_t>(detail::get_uint<std::uint32_t>(in, what));
}

// The UTF-8 of a str (with surrogatepass when it has lone surrogates, then
// `surrogates` is set). The view lives as long as obj or `keep`.
std::string_view utf8_of(pyb::handle obj, pyb::object& keep, bool& surrogates) {
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(obj.ptr(), &n);
  surrogates = false;
  if (p != nullptr) return {p, static_cast<std::size_t>(n)};
  PyErr_Clear();
  keep = pyb::reinterpret_steal<pyb::object>(
      PyUnicode_AsEncodedString(obj.ptr(), "utf-8", "surrogatepass"));
  if (!keep) throw pyb::error_already_set();
  surrogates = true;
  return {PyBytes_AS_STRING(keep.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(keep.ptr()))};
}

void put_str(pyb::handle obj, std::string& out) {
  pyb::object keep;
  bool surrogates = false;
  put_chunk(utf8_of(obj, keep, surrogates), out);
}

std::string_view bytes_view(pyb::handle b) {
  return {PyBytes_AS_STRING(b.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(b.ptr()))};
}

// ---- classes ----------------------------------------------------------------

// Classes of the standard library and numpy, found once (under the GIL).
// The references are kept for the interpreter's life on purpose.
struct Classes {
  PyObject* enum_type = nullptr;  // enum.Enum
  PyObject* decimal = nullptr;    // decimal.Decimal, once decimal is loaded
  PyObject* pure_path = nullptr;  // pathlib.PurePath, once pathlib is loaded
  PyObject* zone_info = nullptr;  // zoneinfo.ZoneInfo, once zoneinfo is loaded
  PyObject* ndarray = nullptr;    // numpy.ndarray, once numpy is loaded
  PyObject* generic = nullptr;    // numpy.generic
  PyObject* pickle_dumps = nullptr;
  PyObject* pickle_loads = nullptr;
};

Classes& classes() {
  static Classes c;
  static bool ready = false;
  if (!ready) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == nullptr) throw pyb::error_already_set();
    c.enum_type = pyb::object(pyb::module_::import("enum").attr("Enum")).release().ptr();
    ready = true;
  }
  return c;
}

// attr of module `module` if the interpreter has loaded it (never imports,
// so that encoding never loads modules: an object of an unloaded module's
// class cannot exist).
PyObject* loaded_attr(PyObject*& slot, const char* module, const char* attr) {
  if (slot != nullptr) return slot;
  PyObject* mod = PyImport_GetModule(pyb::str(module).ptr());  // new ref or NULL
  if (mod == nullptr) {
    if (PyErr_Occurred()) throw pyb::error_already_set();
    return nullptr;
  }
  PyObject* a = PyObject_GetAttrString(mod, attr);
  Py_DECREF(mod);
  if (a == nullptr) throw pyb::error_already_set();
  slot = a;
  return slot;
}

// The same, importing the module (decoding a type that needs it).
PyObject* imported_attr(PyObject*& slot, const char* module, const char* attr) {
  if (slot == nullptr) slot = pyb::object(pyb::module_::import(module).attr(attr)).release().ptr();
  return slot;
}

bool is_instance(pyb::handle obj, PyObject* cls) {
  if (cls == nullptr) return false;
  const int r = PyObject_IsInstance(obj.ptr(), cls);
  if (r < 0) throw pyb::error_already_set();
  return r == 1;
}

std::string type_name(pyb::handle obj) {
  pyb::handle t(reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr())));
  return pyb::str(t.attr("__module__")).cast<std::string>() + "." +
         pyb::str(t.attr("__qualname__")).cast<std::string>();
}

void put_class(pyb::handle cls, std::string& out) {
  put_str(pyb::str(cls.attr("__module__")), out);
  put_str(pyb::str(cls.attr("__qualname__")), out);
}

// ---- encoding ---------------------------------------------------------------

class Encoder {
 public:
  Encoder(bool key, bool allow_pickle, std::string& out)
      : key_(key), allow_pickle_(allow_pickle), out_(out), c_(classes()) {}

  void value(pyb::handle obj, int depth) {
    PyObject* o = obj.ptr();
    PyTypeObject* t = Py_TYPE(o);
    // The common exact types first.
    if (t == &PyLong_Type) return put_int(obj);
    if (t == &PyUnicode_Type) return put_text(obj);
    if (o == Py_None) return out_.push_back(static_cast<char>(kNone));
    if (t == &PyBool_Type) return out_.push_back(static_cast<char>(o == Py_True ? kTrue : kFalse));
    if (t == &PyFloat_Type) return put_float(PyFloat_AS_DOUBLE(o));
    if (t == &PyTuple_Type) return put_items(kTuple, obj, depth);
    if (t == &PyList_Type) return put_items(kList, obj, depth);
    if (t == &PyDict_Type) return put_dict(obj, depth);
    if (t == &PyBytes_Type) return put_tagged_chunk(kBytes, bytes_view(obj));
    if (special(obj, depth)) return;
    if (key_) {
      // Subclasses of builtins, as their base.
      if (PyLong_Check(o)) return put_int(obj);
      if (PyUnicode_Check(o)) return put_text(obj);
      if (PyFloat_Check(o)) return put_float(PyFloat_AsDouble(o));
      if (PyTuple_Check(o)) return put_items(kTuple, obj, depth);
      if (PyList_Check(o)) return put_items(kList, obj, depth);
      if (PyDict_Check(o)) return put_dict(obj, depth);
      if (PyBytes_Check(o)) return put_tagged_chunk(kBytes, bytes_view(obj));
      if (PyAnySet_Check(o)) return put_set(PyFrozenSet_Check(o) ? kFrozenSet : kSet, obj, depth);
      if (PyByteArray_Check(o)) return put_bytearray(obj);
      throw pyb::type_error(
          "tcache: cannot make a cache key of an argument of type '" + type_name(obj) +
          "': pass key= (a function of the call's arguments that returns a key), or "
          "ignore=(\"self\",) to leave the argument out, or give the class a "
          "__tcache_key__() method");
    }
    if (allow_pickle_) return put_pickle(obj);
    throw pyb::type_error("tcache: cannot store a value of type '" + type_name(obj) +
                          "' with the safe codec: pass serializer=\"pickle\" (only for a "
                          "cache that is yours alone) or an object with dumps/loads");
  }

 private:
  void put_tag(Tag t) { out_.push_back(static_cast<char>(t)); }

  void put_int(pyb::handle obj) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (overflow == 0) {
      if (v == -1 && PyErr_Occurred()) throw pyb::error_already_set();
      put_tag(kInt);
      detail::put_uint<std::uint64_t>(static_cast<std::uint64_t>(v), out_);
      return;
    }
    // Minimal two's complement: bit_length + 1 sign bit, rounded up to bytes.
    pyb::int_ i = pyb::reinterpret_borrow<pyb::int_>(obj);
    const std::size_t bits = i.attr("bit_length")().cast<std::size_t>();
    pyb::bytes b = i.attr("to_bytes")(bits / 8 + 1, "little", pyb::arg("signed") = true);
    put_tagged_chunk(kBigInt, bytes_view(b));
  }

  void put_text(pyb::handle obj) {
    pyb::object keep;
    bool surrogates = false;
    const std::string_view s = utf8_of(obj, keep, surrogates);
    put_tagged_chunk(surrogates ? kStrSurrogates : kStr, s);
  }

  void put_float(double d) {
    if (d == -1.0 && PyErr_Occurred()) throw pyb::error_already_set();
    put_tag(kFloat);
    put_double(d, out_);
  }

  void put_tagged_chunk(Tag t, std::string_view bytes) {
    put_tag(t);
    put_chunk(bytes, out_);
  }

  void put_bytearray(pyb::handle obj) {
    put_tagged_chunk(kByteArray, {PyByteArray_AS_STRING(obj.ptr()),
                                  static_cast<std::size_t>(PyByteArray_GET_SIZE(obj.ptr()))});
  }

  int deeper(int depth) {
    if (depth >= kMaxDepth) {
      throw pyb::value_error("tcache: cannot encode a " + std::string(key_ ? "key" : "value") +
                             " nested deeper than " + std::to_string(kMaxDepth) +
                             " levels (a container that holds itself?)");
    }
    return depth + 1;
  }

  // A tuple or list (or a subclass), element by element.
  void put_items(Tag t, pyb::handle obj, int depth) {
    const int d = deeper(depth);
    pyb::object seq = pyb::reinterpret_steal<pyb::object>(PySequence_Fast(obj.ptr(), "sequence"));
    if (!seq) throw pyb::error_already_set();
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    put_tag(t);
    put_varint(static_cast<std::uint64_t>(n), out_);
    for (Py_ssize_t i = 0; i < n; ++i) value(PySequence_Fast_GET_ITEM(seq.ptr(), i), d);
  }

  // Encodes each part on its own and appends them sorted: the canonical
  // order of an unordered container.
  void put_sorted(std::vector<std::string>& parts) {
    std::sort(parts.begin(), parts.end());
    put_varint(parts.size(), out_);
    for (const auto& p : parts) out_ += p;
  }

  void put_dict(pyb::handle obj, int depth) {
    const int d = deeper(depth);
    put_tag(kDict);
    // Iterate a snapshot of the items: encoding may run Python code.
    pyb::list items = pyb::reinterpret_steal<pyb::list>(PyMapping_Items(obj.ptr()));
    if (!items) throw pyb::error_already_set();
    if (!key_) {
      put_varint(items.size(), out_);
      for (pyb::handle kv : items) {
        value(PyTuple_GET_ITEM(kv.ptr(), 0), d);
        value(PyTuple_GET_ITEM(kv.ptr(), 1), d);
      }
      return;
    }
    std::vector<std::string> parts;
    parts.reserve(items.size());
    for (pyb::handle kv : items) {
      std::string part;
      Encoder e(key_, allow_pickle_, part);
      e.value(PyTuple_GET_ITEM(kv.ptr(), 0), d);
      e.value(PyTuple_GET_ITEM(kv.ptr(), 1), d);
      parts.push_back(std::move(part));
    }
    put_sorted(parts);
  }

  void put_set(Tag t, pyb::handle obj, int depth) {
    const int d = deeper(depth);
    put_tag(t);
    pyb::list items = pyb::reinterpret_steal<pyb::list>(PySequence_List(obj.ptr()));
    if (!items) throw pyb::error_already_set();
    if (!key_) {
      put_varint(items.size(), out_);
      for (pyb::handle e : items) value(e, d);
      return;
    }
    std::vector<std::string> parts;
    parts.reserve(items.size());
    for (pyb::handle item : items) {
      std::string part;
      Encoder(key_, allow_pickle_, part).value(item, d);
      parts.push_back(std::move(part));
    }
    put_sorted(parts);
  }

  void put_pickle(pyb::handle obj) {
    PyObject* dumps = imported_attr(c_.pickle_dumps, "pickle", "dumps");
    pyb::bytes b = pyb::handle(dumps)(obj, 5);
    put_tagged_chunk(kPickle, bytes_view(b));
  }

  // The types that are not plain builtins. Returns whether obj was one.
  bool special(pyb::handle obj, int depth) {
    PyObject* o = obj.ptr();
    pyb::handle type(reinterpret_cast<PyObject*>(Py_TYPE(o)));
    if (key_ && PyObject_HasAttrString(type.ptr(), "__tcache_key__")) {
      const int d = deeper(depth);
      pyb::object k = obj.attr("__tcache_key__")();
      put_tag(kKeyed);
      put_class(type, out_);
      value(k, d);
      return true;
    }
    if (PyType_IsSubtype(Py_TYPE(o), reinterpret_cast<PyTypeObject*>(c_.enum_type))) {
      put_tag(kEnum);
      put_class(type, out_);
      value(obj.attr("_value_"), deeper(depth));
      return true;
    }
    if (PyDateTime_Check(o)) {
      put_tag(kDateTime);
      put_date(o);
      out_.push_back(static_cast<char>(PyDateTime_DATE_GET_HOUR(o)));
      out_.push_back(static_cast<char>(PyDateTime_DATE_GET_MINUTE(o)));
      out_.push_back(static_cast<char>(PyDateTime_DATE_GET_SECOND(o)));
      detail::put_uint<std::uint32_t>(PyDateTime_DATE_GET_MICROSECOND(o), out_);
      out_.push_back(static_cast<char>(PyDateTime_DATE_GET_FOLD(o)));
      put_tz(obj, PyDateTime_DATE_GET_TZINFO(o));
      return true;
    }
    if (PyDate_Check(o)) {
      put_tag(kDate);
      put_date(o);
      return true;
    }
    if (PyTime_Check(o)) {
      put_tag(kTime);
      out_.push_back(static_cast<char>(PyDateTime_TIME_GET_HOUR(o)));
      out_.push_back(static_cast<char>(PyDateTime_TIME_GET_MINUTE(o)));
      out_.push_back(static_cast<char>(PyDateTime_TIME_GET_SECOND(o)));
      detail::put_uint<std::uint32_t>(PyDateTime_TIME_GET_MICROSECOND(o), out_);
      out_.push_back(static_cast<char>(PyDateTime_TIME_GET_FOLD(o)));
      put_tz(pyb::none(), PyDateTime_TIME_GET_TZINFO(o));
      return true;
    }
    if (PyDelta_Check(o)) {
      put_tag(kTimeDelta);
      put_delta(o);
      return true;
    }
    if (is_instance(obj, loaded_attr(c_.decimal, "decimal", "Decimal"))) {
      put_tag(kDecimal);
      put_str(key_ ? canonical_decimal(obj) : pyb::str(obj), out_);
      return true;
    }
    if (is_instance(obj, loaded_attr(c_.pure_path, "pathlib", "PurePath"))) {
      put_path(obj);
      return true;
    }
    if (loaded_attr(c_.ndarray, "numpy", "ndarray") != nullptr) {
      if (Py_TYPE(o) == reinterpret_cast<PyTypeObject*>(c_.ndarray)) {
        put_ndarray(obj);
        return true;
      }
      if (is_instance(obj, loaded_attr(c_.generic, "numpy", "generic"))) {
        put_numpy_scalar(obj);
        return true;
      }
    }
    if (!PyType_Check(o) && PyObject_HasAttrString(type.ptr(), "__dataclass_fields__")) {
      put_dataclass(obj, depth);
      return true;
    }
    if (PyTuple_Check(o) && PyObject_HasAttrString(type.ptr(), "_fields")) {
      const int d = deeper(depth);
      put_tag(kNamedTuple);
      put_class(type, out_);
      const Py_ssize_t n = PyTuple_GET_SIZE(o);
      put_varint(static_cast<std::uint64_t>(n), out_);
      for (Py_ssize_t i = 0; i < n; ++i) value(PyTuple_GET_ITEM(o, i), d);
      return true;
    }
    if (PyComplex_CheckExact(o) || (key_ && PyComplex_Check(o))) {
      put_tag(kComplex);
      put_double(PyComplex_RealAsDouble(o), out_);
      put_double(PyComplex_ImagAsDouble(o), out_);
      return true;
    }
    if (PyAnySet_CheckExact(o)) {
      put_set(PyFrozenSet_CheckExact(o) ? kFrozenSet : kSet, obj, depth);
      return true;
    }
    if (PyByteArray_CheckExact(o)) {
      put_bytearray(obj);
      return true;
    }
    return false;
  }

  void put_date(PyObject* o) {
    detail::put_uint<std::uint16_t>(static_cast<std::uint16_t>(PyDateTime_GET_YEAR(o)), out_);
    out_.push_back(static_cast<char>(PyDateTime_GET_MONTH(o)));
    out_.push_back(static_cast<char>(PyDateTime_GET_DAY(o)));
  }

  void put_delta(PyObject* delta) {
    put_i32(PyDateTime_DELTA_GET_DAYS(delta), out_);
    put_i32(PyDateTime_DELTA_GET_SECONDS(delta), out_);
    put_i32(PyDateTime_DELTA_GET_MICROSECONDS(delta), out_);
  }

  // dt: the datetime (for utcoffset of an arbitrary tzinfo), or None (time).
  void put_tz(pyb::handle dt, PyObject* tz) {
    if (tz == Py_None) {
      out_.push_back(static_cast<char>(kNaive));
      return;
    }
    pyb::handle tzh(tz);
    if (PyTZInfo_Check(tz) && Py_TYPE(tz) == Py_TYPE(PyDateTime_TimeZone_UTC)) {
      out_.push_back(static_cast<char>(kFixed));
      put_delta(tzh.attr("utcoffset")(pyb::none()).ptr());
      return;
    }
    if (is_instance(tzh, loaded_attr(c_.zone_info, "zoneinfo", "ZoneInfo"))) {
      out_.push_back(static_cast<char>(kZoneInfo));
      put_str(pyb::str(tzh.attr("key")), out_);
      return;
    }
    if (!key_) {
      throw pyb::type_error("tcache: cannot store a datetime whose tzinfo is a '" + type_name(tzh) +
                            "' with the safe codec (datetime.timezone and zoneinfo.ZoneInfo "
                            "are supported): pass serializer=\"pickle\" or convert it");
    }
    out_.push_back(static_cast<char>(kOtherTz));
    pyb::object offset = tzh.attr("utcoffset")(dt);
    pyb::object name = tzh.attr("tzname")(dt);
    if (offset.is_none()) {
      put_i32(0, out_);
      put_i32(0, out_);
      put_i32(0, out_);
    } else {
      put_delta(offset.ptr());
    }
    put_str(pyb::str(name), out_);
  }

  // Sign, digits without trailing zeros and exponent: one string for all
  // equal finite Decimals of one sign (1.0 and 1.00).
  static pyb::str canonical_decimal(pyb::handle d) {
    pyb::tuple t = d.attr("as_tuple")();
    pyb::handle exp = t[2];
    if (!PyLong_Check(exp.ptr())) return pyb::str(d);  // NaN, sNaN, Infinity
    std::string digits;
    pyb::tuple digit_tuple = t[1];
    for (pyb::handle digit : digit_tuple) {
      digits.push_back(static_cast<char>('0' + digit.cast<int>()));
    }
    pyb::int_ e = pyb::reinterpret_borrow<pyb::int_>(exp);
    std::size_t zeros = 0;
    while (zeros + 1 < digits.size() && digits[digits.size() - 1 - zeros] == '0') ++zeros;
    digits.resize(digits.size() - zeros);
    if (digits == "0") return pyb::str(t[0].cast<int>() ? "-0" : "0");
    pyb::int_ exponent = pyb::reinterpret_steal<pyb::int_>(
        PyNumber_Add(e.ptr(), pyb::int_(static_cast<Py_ssize_t>(zeros)).ptr()));
    return pyb::str((t[0].cast<int>() ? "-" : "") + digits + "E" +
                    pyb::str(exponent).cast<std::string>());
  }

  void put_path(pyb::handle obj) {
    // The nearest class of pathlib itself (a user's subclass counts as it).
    pyb::tuple mro =
        pyb::reinterpret_borrow<pyb::object>(reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr())))
            .attr("__mro__");
    for (pyb::handle cls : mro) {
      if (pyb::str(cls.attr("__module__")).cast<std::string>() == "pathlib") {
        put_tag(kPath);
        put_str(pyb::str(cls.attr("__name__")), out_);
        put_str(pyb::str(obj), out_);
        return;
      }
    }
    throw pyb::type_error("tcache: a pathlib path without a pathlib class: " + type_name(obj));
  }

  // dtype.str of an array or numpy scalar, refusing dtypes whose bytes are
  // not the value (object references, structured records).
  std::string dtype_str(pyb::handle obj) {
    pyb::object dtype = obj.attr("dtype");
    const std::string kind = pyb::str(dtype.attr("kind")).cast<std::string>();
    if (kind.size() != 1 || std::string_view("biufcmMSU").find(kind[0]) == std::string::npos) {
      throw pyb::type_error(
          "tcache: numpy arrays of dtype " + pyb::str(dtype).cast<std::string>() + " (kind '" +
          kind + "') have no safe encoding (only numbers, booleans, datetimes, bytes and str): " +
          (key_ ? "pass key= or ignore=" : "pass serializer=\"pickle\""));
    }
    return pyb::str(dtype.attr("str")).cast<std::string>();
  }

  void put_ndarray(pyb::handle obj) {
    const std::string dtype = dtype_str(obj);
    // (ascontiguousarray would make a 0-d array 1-d)
    pyb::object a = pyb::bool_(obj.attr("flags").attr("c_contiguous"))
                        ? pyb::reinterpret_borrow<pyb::object>(obj)
                        : obj.attr("copy")("C");
    pyb::tuple shape = a.attr("shape");
    put_tag(kNdarray);
    put_chunk(dtype, out_);
    put_varint(shape.size(), out_);
    for (pyb::handle dim : shape) put_varint(dim.cast<std::uint64_t>(), out_);
    const std::size_t n = a.attr("nbytes").cast<std::size_t>();
    put_varint(n, out_);
    pyb::tuple data = a.attr("__array_interface__")["data"];
    const auto* p = reinterpret_cast<const char*>(data[0].cast<std::uintptr_t>());
    if (n != 0) out_.append(p, n);  // one bulk copy of the C-order bytes
  }

  void put_numpy_scalar(pyb::handle obj) {
    const std::string dtype = dtype_str(obj);
    pyb::bytes b = obj.attr("tobytes")();
    put_tag(kNumpyScalar);
    put_chunk(dtype, out_);
    put_chunk(bytes_view(b), out_);
  }

  void put_dataclass(pyb::handle obj, int depth) {
    const int d = deeper(depth);
    pyb::object fields = pyb::module_::import("dataclasses").attr("fields")(obj);
    std::vector<pyb::object> names;
    for (pyb::handle f : fields) {
      if (key_ && !pyb::bool_(f.attr("compare"))) continue;  // as __eq__ sees it
      names.push_back(f.attr("name"));
    }
    put_tag(kDataclass);
    put_class(pyb::handle(reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()))), out_);
    put_varint(names.size(), out_);
    for (const auto& name : names) {
      put_str(name, out_);
      value(pyb::getattr(obj, name), d);
    }
  }

  bool key_;
  bool allow_pickle_;
  std::string& out_;
  Classes& c_;
};

// ---- decoding ---------------------------------------------------------------

class Decoder {
 public:
  Decoder(std::string_view in, bool allow_pickle)
      : in_(in), allow_pickle_(allow_pickle), c_(classes()) {}

  pyb::object all() {
    pyb::object v = value(0);
    if (!in_.empty()) {
      detail::decode_fail(std::to_string(in_.size()) + " trailing bytes after the value");
    }
    return v;
  }

 private:
  pyb::object value(int depth) {
    if (depth > kMaxDepth) {
      detail::decode_fail("value nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    const auto tag = detail::get_uint<std::uint8_t>(in_, "tag");
    switch (tag) {
      case kNone:
        return pyb::none();
      case kFalse:
        return pyb::bool_(false);
      case kTrue:
        return pyb::bool_(true);
      case kInt:
        return steal(PyLong_FromLongLong(
            static_cast<long long>(detail::get_uint<std::uint64_t>(in_, "int"))));
      case kBigInt: {
        const std::string_view b = get_chunk(in_, "int");
        return pyb::module_::import("builtins")
            .attr("int")
            .attr("from_bytes")(pyb::bytes(b.data(), b.size()), "little",
                                pyb::arg("signed") = true);
      }
      case kFloat:
        return steal(PyFloat_FromDouble(get_double(in_)));
      case kComplex: {
        const double re = get_double(in_);
        return steal(PyComplex_FromDoubles(re, get_double(in_)));
      }
      case kStr:
        return text(get_chunk(in_, "str"), nullptr);
      case kStrSurrogates:
        return text(get_chunk(in_, "str"), "surrogatepass");
      case kBytes: {
        const std::string_view b = get_chunk(in_, "bytes");
        return steal(PyBytes_FromStringAndSize(b.data(), static_cast<Py_ssize_t>(b.size())));
      }
      case kByteArray: {
        const std::string_view b = get_chunk(in_, "bytearray");
        return steal(PyByteArray_FromStringAndSize(b.data(), static_cast<Py_ssize_t>(b.size())));
      }
      case kTuple:
        return items(kTuple, get_length(in_, 1, "tuple"), depth);
      case kList:
        return items(kList, get_length(in_, 1, "list"), depth);
      case kDict: {
        const std::size_t n = get_length(in_, 2, "dict");
        pyb::dict d;
        for (std::size_t i = 0; i < n; ++i) {
          pyb::object k = value(depth + 1);
          pyb::object v = value(depth + 1);
          if (PyDict_SetItem(d.ptr(), k.ptr(), v.ptr()) != 0) python_failed("dict key");
        }
        return d;
      }
      case kSet:
      case kFrozenSet: {
        const std::size_t n = get_length(in_, 1, "set");
        pyb::object s = steal(tag == kSet ? PySet_New(nullptr) : PyFrozenSet_New(nullptr));
        for (std::size_t i = 0; i < n; ++i) {
          if (PySet_Add(s.ptr(), value(depth + 1).ptr()) != 0) python_failed("set element");
        }
        return s;
      }
      case kEnum: {
        pyb::object cls = find_class("Enum");
        pyb::object v = value(depth + 1);
        require(PyType_Check(cls.ptr()) &&
                    PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(cls.ptr()),
                                     reinterpret_cast<PyTypeObject*>(c_.enum_type)),
                "an Enum member's class is not an Enum");
        return call([&] { return cls(v); }, "Enum member");
      }
      case kDateTime:
        return datetime();
      case kDate: {
        const int y = detail::get_uint<std::uint16_t>(in_, "date");
        const int m = detail::get_uint<std::uint8_t>(in_, "date");
        const int d = detail::get_uint<std::uint8_t>(in_, "date");
        return checked(PyDate_FromDate(y, m, d), "date");
      }
      case kTime:
        return time();
      case kTimeDelta:
        return delta();
      case kDecimal: {
        const std::string_view s = get_chunk(in_, "Decimal");
        PyObject* cls = imported_attr(c_.decimal, "decimal", "Decimal");
        pyb::str str = text(s, nullptr);
        return call([&] { return pyb::handle(cls)(str); }, "Decimal");
      }
      case kPath:
        return path();
      case kDataclass:
        return dataclass(depth);
      case kNamedTuple:
        return named_tuple(depth);
      case kNdarray:
        return ndarray();
      case kNumpyScalar:
        return numpy_scalar();
      case kPickle: {
        const std::string_view b = get_chunk(in_, "pickle");
        if (!allow_pickle_) {
          detail::decode_fail(
              "the value holds a pickle, and pickle is not allowed for this cache (it is "
              "shared or remote); pass serializer=\"pickle\" only for a cache that is yours "
              "alone");
        }
        PyObject* loads = imported_attr(c_.pickle_loads, "pickle", "loads");
        return call([&] { return pyb::handle(loads)(pyb::bytes(b.data(), b.size())); }, "pickle");
      }
      default:
        detail::decode_fail("unknown tag " + std::to_string(tag));
    }
  }

  // A tuple or list of n values.
  pyb::object items(Tag t, std::size_t n, int depth) {
    pyb::object seq = steal(t == kTuple ? PyTuple_New(static_cast<Py_ssize_t>(n))
                                        : PyList_New(static_cast<Py_ssize_t>(n)));
    for (std::size_t i = 0; i < n; ++i) {
      PyObject* v = value(depth + 1).release().ptr();
      if (t == kTuple) {
        PyTuple_SET_ITEM(seq.ptr(), static_cast<Py_ssize_t>(i), v);
      } else {
        PyList_SET_ITEM(seq.ptr(), static_cast<Py_ssize_t>(i), v);
      }
    }
    return seq;
  }

  static void require(bool ok, const char* what) {
    if (!ok) detail::decode_fail(what);
  }

  // Turns the Python exception in flight into a decode error.
  [[noreturn]] static void python_failed(const std::string& what) {
    pyb::error_already_set e;
    detail::decode_fail(what + ": " + e.what());
  }

  template <class F>
  static pyb::object call(F&& f, const std::string& what) {
    try {
      return f();
    } catch (pyb::error_already_set& e) {
      detail::decode_fail(what + ": " + e.what());
    }
  }

  static pyb::object steal(PyObject* o) {
    if (o == nullptr) throw pyb::error_already_set();
    return pyb::reinterpret_steal<pyb::object>(o);
  }

  static pyb::object checked(PyObject* o, const char* what) {
    if (o == nullptr) python_failed(what);
    return pyb::reinterpret_steal<pyb::object>(o);
  }

  static pyb::str text(std::string_view s, const char* errors) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), errors);
    if (o == nullptr) python_failed("str");
    return pyb::reinterpret_steal<pyb::str>(o);
  }

  pyb::str get_str(const char* what) { return text(get_chunk(in_, what), nullptr); }

  // A class by module and qualname, among the modules already loaded.
  pyb::object find_class(const char* what) {
    const pyb::str module = get_str(what);
    const std::string qualname = get_str(what).cast<std::string>();
    PyObject* mod = PyImport_GetModule(module.ptr());
    if (mod == nullptr) {
      if (PyErr_Occurred()) python_failed(what);
      detail::decode_fail(std::string(what) + " class " + module.cast<std::string>() + "." +
                          qualname +
                          ": its module is not loaded in this process (import it first; "
                          "decoding never imports)");
    }
    pyb::object obj = pyb::reinterpret_steal<pyb::object>(mod);
    // Each part from the __dict__ of the module, then of the class: no
    // module __getattr__ (which may import) and no descriptors run.
    std::size_t at = 0;
    while (at <= qualname.size()) {
      const std::size_t dot = std::min(qualname.find('.', at), qualname.size());
      PyObject* dict = PyModule_Check(obj.ptr()) ? PyModule_GetDict(obj.ptr())
                       : PyType_Check(obj.ptr())
                           ? reinterpret_cast<PyTypeObject*>(obj.ptr())->tp_dict
                           : nullptr;
      PyObject* next = nullptr;
      if (dict != nullptr) {
        const pyb::str part(qualname.substr(at, dot - at));
        next = PyDict_GetItemWithError(dict, part.ptr());  // borrowed
        if (next == nullptr && PyErr_Occurred()) python_failed(what);
      }
      if (next == nullptr) {
        detail::decode_fail(std::string(what) + " class " + module.cast<std::string>() + "." +
                            qualname + " is not defined in this process");
      }
      obj = pyb::reinterpret_borrow<pyb::object>(next);
      at = dot + 1;
    }
    require(PyType_Check(obj.ptr()), "the name of a class is not a class");
    return obj;
  }

  pyb::object delta() {
    const int days = get_i32(in_, "timedelta");
    const int seconds = get_i32(in_, "timedelta");
    const int micro = get_i32(in_, "timedelta");
    return checked(PyDelta_FromDSU(days, seconds, micro), "timedelta");
  }

  pyb::object tz() {
    const auto kind = detail::get_uint<std::uint8_t>(in_, "tz");
    switch (kind) {
      case kNaive:
        return pyb::none();
      case kFixed: {
        pyb::object offset = delta();
        return checked(PyTimeZone_FromOffset(offset.ptr()), "timezone");
      }
      case kZoneInfo: {
        pyb::str key = get_str("ZoneInfo");
        PyObject* cls = imported_attr(c_.zone_info, "zoneinfo", "ZoneInfo");
        return call([&] { return pyb::handle(cls)(key); }, "ZoneInfo");
      }
      default:
        detail::decode_fail("unknown tz kind " + std::to_string(kind));
    }
  }

  pyb::object datetime() {
    const int y = detail::get_uint<std::uint16_t>(in_, "datetime");
    int f[5];
    for (int& x : f) x = detail::get_uint<std::uint8_t>(in_, "datetime");
    const int us = static_cast<int>(detail::get_uint<std::uint32_t>(in_, "datetime"));
    const int fold = detail::get_uint<std::uint8_t>(in_, "datetime");
    require(fold <= 1, "datetime fold is not 0 or 1");
    pyb::object tzinfo = tz();
    return checked(
        PyDateTimeAPI->DateTime_FromDateAndTimeAndFold(
            y, f[0], f[1], f[2], f[3], f[4], us, tzinfo.ptr(), fold, PyDateTimeAPI->DateTimeType),
        "datetime");
  }

  pyb::object time() {
    int f[3];
    for (int& x : f) x = detail::get_uint<std::uint8_t>(in_, "time");
    const int us = static_cast<int>(detail::get_uint<std::uint32_t>(in_, "time"));
    const int fold = detail::get_uint<std::uint8_t>(in_, "time");
    require(fold <= 1, "time fold is not 0 or 1");
    pyb::object tzinfo = tz();
    return checked(PyDateTimeAPI->Time_FromTimeAndFold(f[0], f[1], f[2], us, tzinfo.ptr(), fold,
                                                       PyDateTimeAPI->TimeType),
                   "time");
  }

  pyb::object path() {
    const std::string cls = get_str("path").cast<std::string>();
    pyb::str p = get_str("path");
    static constexpr const char* kClasses[] = {"PurePath", "PurePosixPath", "PureWindowsPath",
                                               "Path",     "PosixPath",     "WindowsPath"};
    require(std::find(std::begin(kClasses), std::end(kClasses), cls) != std::end(kClasses),
            "unknown pathlib class");
    return call([&] { return pyb::module_::import("pathlib").attr(cls.c_str())(p); }, "path");
  }

  pyb::object dataclass(int depth) {
    pyb::object cls = find_class("dataclass");
    require(PyObject_HasAttrString(cls.ptr(), "__dataclass_fields__"),
            "a dataclass value's class is not a dataclass");
    pyb::object fields = pyb::module_::import("dataclasses").attr("fields")(cls);
    const std::size_t n = get_length(in_, 1, "dataclass");
    require(n == pyb::len(fields), "the dataclass has other fields now");
    pyb::object obj = call([&] { return cls.attr("__new__")(cls); }, "dataclass");
    PyObject* setattr =
        PyObject_GetAttrString(reinterpret_cast<PyObject*>(&PyBaseObject_Type), "__setattr__");
    pyb::object set = steal(setattr);
    for (pyb::handle f : fields) {
      pyb::str name = get_str("dataclass field");
      require(name.equal(f.attr("name")), "the dataclass has other fields now");
      pyb::object v = value(depth + 1);
      call([&] { return set(obj, name, v); }, "dataclass field");
    }
    return obj;
  }

  pyb::object named_tuple(int depth) {
    pyb::object cls = find_class("NamedTuple");
    require(PyType_Check(cls.ptr()) &&
                PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(cls.ptr()), &PyTuple_Type) &&
                PyObject_HasAttrString(cls.ptr(), "_fields"),
            "a NamedTuple value's class is not a NamedTuple");
    const std::size_t n = get_length(in_, 1, "NamedTuple");
    require(n == pyb::len(cls.attr("_fields")), "the NamedTuple has other fields now");
    pyb::tuple args = pyb::make_tuple(items(kTuple, n, depth));
    return checked(
        PyTuple_Type.tp_new(reinterpret_cast<PyTypeObject*>(cls.ptr()), args.ptr(), nullptr),
        "NamedTuple");
  }

  pyb::object dtype(std::string_view s, pyb::module_& np) {
    require(!s.empty() && s.size() < 64, "numpy dtype string");
    pyb::object dt = call([&] { return np.attr("dtype")(text(s, nullptr)); }, "numpy dtype");
    const std::string kind = pyb::str(dt.attr("kind")).cast<std::string>();
    require(kind.size() == 1 && std::string_view("biufcmMSU").find(kind[0]) != std::string::npos,
            "numpy dtype is not one the codec writes");
    return dt;
  }

  pyb::object ndarray() {
    const std::string_view dstr = get_chunk(in_, "numpy dtype");
    const std::size_t ndim = get_length(in_, 1, "numpy shape");
    require(ndim <= 64, "numpy array has more than 64 dimensions");
    pyb::tuple shape(ndim);
    for (std::size_t i = 0; i < ndim; ++i) {
      PyTuple_SET_ITEM(shape.ptr(), static_cast<Py_ssize_t>(i),
                       pyb::int_(get_varint(in_, "numpy shape")).release().ptr());
    }
    const std::string_view data = get_chunk(in_, "numpy data");
    pyb::module_ np = pyb::module_::import("numpy");
    pyb::object dt = dtype(dstr, np);
    // The element count the shape claims, against the bytes there are (a
    // zero-size dtype gets a bounded count too).
    const std::uint64_t item = dt.attr("itemsize").cast<std::uint64_t>();
    const std::uint64_t limit = data.size() + (std::uint64_t{1} << 20);
    bool empty = false;
    for (pyb::handle dim : shape) empty = empty || dim.cast<std::uint64_t>() == 0;
    std::uint64_t count = empty ? 0 : 1;
    for (pyb::handle dim : shape) {
      if (empty) break;
      const std::uint64_t d = dim.cast<std::uint64_t>();
      require(count <= limit / d, "numpy shape is too large");
      count *= d;
    }
    std::uint64_t size = 0;
    require(!__builtin_mul_overflow(count, item, &size) && size == data.size(),
            "numpy data size does not match dtype and shape");
    pyb::object a = call([&] { return np.attr("empty")(shape, dt); }, "numpy array");
    if (!data.empty()) {
      pyb::tuple ptr = a.attr("__array_interface__")["data"];
      std::memcpy(reinterpret_cast<char*>(ptr[0].cast<std::uintptr_t>()), data.data(), data.size());
    }
    return a;
  }

  pyb::object numpy_scalar() {
    const std::string_view dstr = get_chunk(in_, "numpy dtype");
    const std::string_view data = get_chunk(in_, "numpy scalar");
    pyb::module_ np = pyb::module_::import("numpy");
    pyb::object dt = dtype(dstr, np);
    require(dt.attr("itemsize").cast<std::size_t>() == data.size(),
            "numpy scalar size does not match its dtype");
    return call(
        [&] {
          return np.attr("frombuffer")(pyb::bytes(data.data(), data.size()), dt)[pyb::int_(0)];
        },
        "numpy scalar");
  }

  std::string_view in_;
  bool allow_pickle_;
  Classes& c_;
};

// FNV-1a over the codec's name and format version, as detail::Shape does
// for C++ types; the kind "python" is none of theirs.
constexpr std::uint64_t kFormatVersion = 1;

}  // namespace

void encode_key(pyb::handle obj, std::string& out) { Encoder(true, false, out).value(obj, 0); }

void encode_value(pyb::handle obj, bool allow_pickle, std::string& out) {
  Encoder(false, allow_pickle, out).value(obj, 0);
}

pyb::object decode_value(std::string_view bytes, bool allow_pickle) {
  return Decoder(bytes, allow_pickle).all();
}

std::uint64_t python_fingerprint() {
  return detail::shape_mix(detail::shape_mix(detail::kShapeBasis, "python"), kFormatVersion);
}

}  // namespace tcache::py
