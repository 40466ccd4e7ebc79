// bench/report.h: prints a RunResult as human tables (fmt) or as JSON
// (nlohmann-json). Both show the same numbers; the JSON adds raw counts.
//
// Thread safety: the functions write to stdout; call them from one thread.

#pragma once

#include "results.h"

namespace tcache_bench {

void print_tables(const RunResult& run);
void print_json(const RunResult& run);

}  // namespace tcache_bench
