#!/usr/bin/python3
"""The Python process of `./setup.sh demo`: memoizes the C++ demo's function
on the C++ demo's file and prints its hits.

    PYTHONPATH=build/python /usr/bin/python3 tools/demo.py FILE

tcache-demo's memo workers (tools/demo.cc) call `slow_answer(x) = x*x + 0.5`
through `tcache::bcache` named "demo.slow_answer" on FILE, for x in 0..23.
This process declares the same function with `tcache.bcache` under the same
name on the same file; its annotations (int -> float, i.e. std::int64_t ->
double) make its keys and values tcache::Codec's bytes, so it finds the
values the C++ processes computed instead of computing them again. Entries
that the demo's second part (random puts filling the file) evicted are
computed here, and counted as misses.

Exit status 0 when every value read is right, else 1.
"""

import sys
import time

ARGS = 24  # tools/demo.cc: kMemoArgs
COST = 0.025  # tools/demo.cc: kMemoCost


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    import tcache

    file = sys.argv[1]
    computed = []

    @tcache.bcache(name="demo.slow_answer", path=file)
    def slow_answer(x: int) -> float:
        computed.append(x)
        time.sleep(COST)  # the expensive part
        return x * x + 0.5

    start = time.monotonic()
    wrong = sum(slow_answer(x) != x * x + 0.5 for _ in range(2) for x in range(ARGS))
    elapsed = time.monotonic() - start
    info = slow_answer.cache_info()
    print(f"python process: {2 * ARGS} calls of demo.slow_answer on {file} in {elapsed:.2f} s "
          f"(uncached: {2 * ARGS * COST:.2f} s)")
    print(f"  {info.hits} hits, {info.misses} misses; values the C++ workers computed: "
          f"{ARGS - len(computed)} of {ARGS}, computed here: {len(computed)} "
          f"(keys: {'C++ codec' if slow_answer.cache.function.cpp_types else 'Python codec'})")
    if wrong:
        print(f"  {wrong} WRONG values", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
