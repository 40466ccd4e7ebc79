# The warning flags of every target tcache builds, in one place.
#
#   tcache_warnings       -Wall -Wextra -Wpedantic: the library, the tool,
#                         the benchmarks and the fuzzers.
#   tcache_user_warnings  the same, without -Wmissing-field-initializers:
#                         code that uses the decorators as they are meant to
#                         be used, with designated initializers that leave
#                         options out (GCC 12 warns about them under -Wextra):
#                         the tests, tcache-demo, the decorator and Redis
#                         benchmarks.
#
# Link them PRIVATE and wrapped in $<BUILD_INTERFACE:...>, so that they stay
# out of the installed export set (a static library lists its private
# dependencies in its link interface).
set(tcache_warning_flags -Wall -Wextra -Wpedantic)
add_library(tcache_warnings INTERFACE)
target_compile_options(tcache_warnings INTERFACE ${tcache_warning_flags})

# The -Wno- flag must follow -Wextra (clang applies them in order), so this
# target lists the flags itself rather than linking tcache_warnings (whose
# flags would come last).
add_library(tcache_user_warnings INTERFACE)
target_compile_options(tcache_user_warnings INTERFACE ${tcache_warning_flags}
                                                      -Wno-missing-field-initializers)
