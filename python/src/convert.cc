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

HeldCallable hold_callable(pybind11::object callable, const char* what) {
  if (callable.is_none()) return nullptr;
  if (!PyCallable_Check(callable.ptr())) {
    throw Error(Errc::invalid_option,
                std::string("tcache: ") + what + " must be a callable, or None");
  }
  // Released with the GIL held, whichever thread drops the last copy.
  return HeldCallable(new pybind11::object(std::move(callable)), [](pybind11::object* p) {
    pybind11::gil_scoped_acquire gil;
    delete p;
  });
}

void call_held(const HeldCallable& f, const std::function<PyObject*()>& make_args) {
  pybind11::gil_scoped_acquire gil;
  PyObject* args = make_args();
  PyObject* r = args == nullptr ? nullptr : PyObject_Call(f->ptr(), args, nullptr);
  Py_XDECREF(args);
  if (r == nullptr) {
    PyErr_WriteUnraisable(f->ptr());
  } else {
    Py_DECREF(r);
  }
}

Logger to_logger(pybind11::object callable) {
  HeldCallable held = hold_callable(std::move(callable), "logger (a callable taking one str)");
  if (!held) return {};
  return [held](std::string_view line) {
    call_held(held, [line] {
      return Py_BuildValue(
          "(N)",
          PyUnicode_DecodeUTF8(line.data(), static_cast<Py_ssize_t>(line.size()), "replace"));
    });
  };
}

}  // namespace tcache::py
