#include "fork.h"

namespace tcache::py {

void install_fork_handler(pybind11::module_& m) {
  m.def(
      "at_fork_child", [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); },
      "Makes every Store and Function reopen at its next use (registered with "
      "os.register_at_fork: a forked child calls it by itself).");
  pybind11::module_::import("os").attr("register_at_fork")(pybind11::arg("after_in_child") =
                                                               m.attr("at_fork_child"));
}

}  // namespace tcache::py
