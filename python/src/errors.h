// Raising tcache::Error as the Python class of its Errc (python/src/errors.cc).
//
// Thread safety: call with the GIL held, after bind_errors ran.
#pragma once

#include "tcache/error.h"

namespace tcache::py {

// Sets the Python error indicator to the tcache.errors class of e.code(),
// with e.what() as its message. For raw CPython entry points (which return
// NULL after this); pybind11-bound functions get the same through the
// translator bind_errors registers.
void raise_error(const Error& e);

}  // namespace tcache::py
