#include "convert.h"

#include <cmath>
#include <memory>
#include <string>

#include "tcache/error.h"

namespace tcache::py {

std::chrono::milliseconds to_ms(pybind11::handle seconds, const char* what) {
  if (seconds.is_none()) return std::chrono::milliseconds(0);
  const double s = pybind11::cast<double>(seconds);
  if (!std::isfinite(s) || s < 0) {
    throw Error(Errc::invalid_option, std::string("tcache: ") + what +
                                          " must be a finite number of seconds >= 0 (or None), "
                                          "not " +
                                          std::string(pybind11::str(pybind11::repr(seconds))));
  }
  const double ms = std::ceil(s * 1000.0);
  if (ms > 9.0e15) {
    throw Error(Errc::invalid_option,
                std::string("tcache: ") + what + " is too large (at most 9e12 seconds)");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

double to_seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

std::uint64_t to_count(std::int64_t value, const char* what) {
  if (value < 0) {
    throw Error(Errc::invalid_option,
                std::string("tcache: ") + what + " must be >= 0, not " + std::to_string(value));
  }
  return static_cast<std::uint64_t>(value);
}

Logger to_logger(pybind11::object callable) {
  if (callable.is_none()) return {};
  if (!PyCallable_Check(callable.ptr())) {
    throw Error(Errc::invalid_option, "tcache: logger must be a callable taking one str, or None");
  }
  // The callable is released with the GIL held, whichever thread drops the
  // last copy of the logger.
  std::shared_ptr<pybind11::object> held(new pybind11::object(std::move(callable)),
                                         [](pybind11::object* p) {
                                           pybind11::gil_scoped_acquire gil;
                                           delete p;
                                         });
  return [held](std::string_view line) {
    pybind11::gil_scoped_acquire gil;
    PyObject* text =
        PyUnicode_DecodeUTF8(line.data(), static_cast<Py_ssize_t>(line.size()), "replace");
    if (text == nullptr) {
      PyErr_WriteUnraisable(held->ptr());
      return;
    }
    PyObject* r = PyObject_CallOneArg(held->ptr(), text);
    Py_DECREF(text);
    if (r == nullptr) {
      PyErr_WriteUnraisable(held->ptr());
    } else {
      Py_DECREF(r);
    }
  };
}

}  // namespace tcache::py
