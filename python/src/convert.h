// Conversions between Python's and tcache's option values, shared by the
// Store and Function bindings: seconds as floats, loggers as callables.
//
// Thread safety: call with the GIL held. The loggers they make may be
// called from any thread (they take the GIL).
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "tcache/backend.h"

namespace tcache::py {

// Seconds (int or float; None = 0, "not set") -> milliseconds, rounded up so
// that a positive value never becomes 0 ("not set" in C++). Throws
// Error(invalid_option) naming `what` for a negative, NaN or infinite value.
std::chrono::milliseconds to_ms(pybind11::handle seconds, const char* what);

// Milliseconds -> seconds as a float.
double to_seconds(std::chrono::milliseconds ms);

// A non-negative integer option. Throws Error(invalid_option) naming `what`
// for a negative one.
std::uint64_t to_count(std::int64_t value, const char* what);

// A Python callable kept by C++ callbacks that may run on any thread: the
// last copy drops it with the GIL held. Null for None; Error(invalid_option)
// naming `what` for an object that is not callable.
using HeldCallable = std::shared_ptr<pybind11::object>;
HeldCallable hold_callable(pybind11::object callable, const char* what);

// Calls f with the argument tuple make_args() returns (a new reference, or
// null with an error set), taking the GIL. What it raises is printed as
// unraisable: a callback must not break the cache.
void call_held(const HeldCallable& f, const std::function<PyObject*()>& make_args);

// A Python callable taking one str -> a tcache::Logger (empty for None).
Logger to_logger(pybind11::object callable);

}  // namespace tcache::py
