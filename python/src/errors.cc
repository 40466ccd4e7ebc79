// tcache::Error -> the tcache.errors class of its Errc, raised with the C++
// message; the class's `code` attribute is the Errc's name.

#include "errors.h"

#include <pybind11/pybind11.h>

#include "bindings.h"
#include "tcache/error.h"

namespace tcache::py {
namespace {

// tcache.errors.error_class, looked up once at import. The reference is kept
// for the interpreter's life on purpose: no destructor may drop it after the
// interpreter is gone.
PyObject* g_error_class = nullptr;

}  // namespace

void raise_error(const Error& e) {
  const char* name = error_code_name(e.code());
  PyObject* cls = PyObject_CallFunction(g_error_class, "s", name);
  if (cls == nullptr) return;  // the lookup's own exception is set
  PyObject* exc = PyObject_CallFunction(cls, "ss", e.what(), name);
  Py_DECREF(cls);
  if (exc == nullptr) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
  Py_DECREF(exc);
}

}  // namespace tcache::py

void bind_errors(pybind11::module_& m) {
  pybind11::object errors = pybind11::module_::import("tcache.errors");
  tcache::py::g_error_class = pybind11::object(errors.attr("error_class")).release().ptr();
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const tcache::Error& e) {
      tcache::py::raise_error(e);
    }
  });
  m.attr("errors") = errors;
}
