// Conversions between Python's and tcache's option values, shared by the
// Store and Function bindings: seconds as floats, loggers as callables.
//
// Thread safety: call with the GIL held. The loggers they make may be
// called from any thread (they take the GIL).
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
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

// A Python callable taking one str -> a tcache::Logger (empty for None). The
// logger takes the GIL to call it; exceptions it raises are printed as
// unraisable (a logger must not break the cache).
Logger to_logger(pybind11::object callable);

}  // namespace tcache::py
