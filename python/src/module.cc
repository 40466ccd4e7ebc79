// The _tcache extension module: the Store, the decorators' C++ core, the
// codecs and the error mapping, each bound by its own file (bindings.h).

#include <pybind11/pybind11.h>

#include "bindings.h"
#include "tcache/version.h"

PYBIND11_MODULE(_tcache, m) {
  m.doc() = "tcache's compiled core: Store, Function and the codecs (import tcache instead)";
  bind_errors(m);
  bind_store(m);
  bind_function(m);
  bind_config(m);
  bind_codec(m);
  // Whether this build has the Redis tier (CMake option TCACHE_WITH_REDIS):
  // without it every redis:// URI raises ConfigurationError.
  m.attr("WITH_REDIS") = pybind11::bool_(TCACHE_WITH_REDIS != 0);
}
