// bind_codec: the codecs as functions of _tcache.
//
// encode_key, encode_value and decode_value are raw METH_FASTCALL functions
// (no pybind11 argument conversion): the pure-Python decorators call them on
// every hit, and pybind11's dispatch would cost more than the encoding.

#include <string>
#include <string_view>
#include <vector>

#include "bindings.h"
#include "codec.h"
#include "raw_call.h"

namespace tcache::py {
namespace {
namespace pyb = pybind11;

PyObject* to_bytes(const std::string& s) {
  return PyBytes_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
}

// The arguments (obj[, allow_pickle]) of encode_value and decode_value,
// allow_pickle also as a keyword. Returns false with a TypeError set.
bool parse_args(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                PyObject** obj, bool* allow_pickle) {
  PyObject* flag = nargs > 1 ? args[1] : nullptr;
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    PyObject* name = PyTuple_GET_ITEM(kwnames, i);
    if (flag != nullptr || PyUnicode_CompareWithASCIIString(name, "allow_pickle") != 0) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated keyword argument %R", fn,
                   name);
      return false;
    }
    flag = args[nargs + i];
  }
  if (nargs < 1 || nargs > 2) {
    PyErr_Format(PyExc_TypeError, "%s() takes 1 or 2 positional arguments (%zd given)", fn, nargs);
    return false;
  }
  *obj = args[0];
  int truth = 0;
  if (flag != nullptr && (truth = PyObject_IsTrue(flag)) < 0) return false;
  *allow_pickle = truth == 1;
  return true;
}

PyObject* encode_key_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_Format(PyExc_TypeError, "encode_key() takes 1 argument (%zd given)", nargs);
    return nullptr;
  }
  return raw_call([&] {
    std::string out;  // local: encoding may call __tcache_key__, which may encode
    encode_key(args[0], out);
    return to_bytes(out);
  });
}

PyObject* encode_value_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* obj = nullptr;
  bool allow_pickle = false;
  if (!parse_args("encode_value", args, nargs, kwnames, &obj, &allow_pickle)) return nullptr;
  return raw_call([&] {
    std::string out;
    encode_value(obj, allow_pickle, out);
    return to_bytes(out);
  });
}

PyObject* decode_value_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* obj = nullptr;
  bool allow_pickle = false;
  if (!parse_args("decode_value", args, nargs, kwnames, &obj, &allow_pickle)) return nullptr;
  return raw_call([&]() -> PyObject* {
    if (PyBytes_Check(obj)) {
      const std::string_view b(PyBytes_AS_STRING(obj),
                               static_cast<std::size_t>(PyBytes_GET_SIZE(obj)));
      return decode_value(b, allow_pickle).release().ptr();
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS) != 0) return nullptr;
    struct Release {
      Py_buffer* v;
      ~Release() { PyBuffer_Release(v); }
    } release{&view};
    const std::string_view b(static_cast<const char*>(view.buf),
                             static_cast<std::size_t>(view.len));
    return decode_value(b, allow_pickle).release().ptr();
  });
}

PyMethodDef kFunctions[] = {
    {"encode_key", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(encode_key_fn)),
     METH_FASTCALL, "encode_key(obj) -> bytes\n\nThe canonical key bytes of obj (Python codec)."},
    {"encode_value", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(encode_value_fn)),
     METH_FASTCALL | METH_KEYWORDS,
     "encode_value(obj, allow_pickle=False) -> bytes\n\nThe value bytes of obj (Python codec)."},
    {"decode_value", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(decode_value_fn)),
     METH_FASTCALL | METH_KEYWORDS,
     "decode_value(data, allow_pickle=False) -> object\n\nDecodes encode_value's bytes; "
     "raises tcache.DecodeError on malformed data."},
};

std::string_view view_of(const pyb::bytes& b) {
  return {PyBytes_AS_STRING(b.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(b.ptr()))};
}

}  // namespace
}  // namespace tcache::py

void bind_codec(pybind11::module_& m) {
  namespace pyb = pybind11;
  using namespace tcache::py;
  pyb::object module_name = m.attr("__name__");
  for (PyMethodDef& def : kFunctions) {
    PyObject* f = PyCFunction_NewEx(&def, nullptr, module_name.ptr());
    if (f == nullptr) throw pyb::error_already_set();
    m.add_object(def.ml_name, pyb::reinterpret_steal<pyb::object>(f));
  }
  m.def("python_fingerprint", &python_fingerprint,
        "The fingerprint stored with Python-codec values (no C++ type has it).");
  m.def(
      "cpp_encode",
      [](pyb::handle obj, pyb::handle spec) {
        std::string out;
        cpp_encode(obj, parse_spec(spec), out);
        return pyb::bytes(out);
      },
      pyb::arg("obj"), pyb::arg("spec"),
      "tcache::Codec's bytes of obj as the C++ type spec describes.");
  m.def(
      "cpp_encode_args",
      [](pyb::handle args, pyb::handle specs) {
        std::vector<CppSpec> parsed;
        for (pyb::handle s : specs) parsed.push_back(parse_spec(s));
        std::string out;
        cpp_encode_args(args, parsed, out);
        return pyb::bytes(out);
      },
      pyb::arg("args"), pyb::arg("specs"),
      "The bytes the C++ decorators hash for a call with these arguments (encode_args).");
  m.def(
      "cpp_decode",
      [](const pyb::bytes& data, pyb::handle spec) {
        return cpp_decode(view_of(data), parse_spec(spec));
      },
      pyb::arg("data"), pyb::arg("spec"),
      "tcache::decode<T>(data) for the C++ type spec; raises tcache.DecodeError.");
  m.def(
      "cpp_fingerprint", [](pyb::handle spec) { return cpp_fingerprint(parse_spec(spec)); },
      pyb::arg("spec"), "tcache::type_fingerprint<T>() of the C++ type spec.");
}
