// Raw CPython methods on pybind11 classes, for the hottest calls (Store.get,
// s[key], Function.lookup): pybind11's argument dispatch costs more than
// the work of a cache hit. A raw method reaches its C++ object directly and
// turns C++ exceptions into Python ones as pybind11 would.
//
// Thread safety: call with the GIL held.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <new>

#include "errors.h"
#include "tcache/error.h"

namespace tcache::py {

// The C++ object of a pybind11 instance of T (or of a Python subclass), or
// null with TypeError set when its __init__ has not run.
template <class T>
T* raw_self(PyObject* self) {
  auto* inst = reinterpret_cast<pybind11::detail::instance*>(self);
  void* p = inst->simple_layout ? inst->simple_value_holder[0]
                                : pybind11::cast<T*>(pybind11::handle(self));
  if (p == nullptr) {
    PyErr_Format(PyExc_TypeError, "tcache: %.100s.__init__ was not called", Py_TYPE(self)->tp_name);
    return nullptr;
  }
  return static_cast<T*>(p);
}

// Runs body() (returning a new reference, or null with an error set) and
// turns what it throws into the Python error pybind11 would raise.
template <class Body>
PyObject* raw_call(Body&& body) noexcept {
  try {
    return body();
  } catch (const Error& e) {
    raise_error(e);
  } catch (pybind11::error_already_set& e) {
    e.restore();
  } catch (const pybind11::builtin_exception& e) {
    e.set_error();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// Adds `def` to class `cls` as a method (METH_O, METH_FASTCALL, ...). `def`
// must outlive the class (a static).
inline void add_raw_method(pybind11::handle cls, PyMethodDef* def) {
  PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), def);
  if (descr == nullptr) throw pybind11::error_already_set();
  pybind11::setattr(cls, def->ml_name, pybind11::reinterpret_steal<pybind11::object>(descr));
}

}  // namespace tcache::py
