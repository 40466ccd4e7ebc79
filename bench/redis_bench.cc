// bench/redis_bench.cc: tcache-redis-bench, the Redis tier against raw
// hiredis on the same server, keys and values, in one run, as ratios.
//
// Starts its own redis-server on a free loopback port (no persistence; see
// tests/support/redis_server.h), fills --keys keys with --value-bytes-byte
// values through tcache's Redis backend, and times, over the same random
// key sequence:
//
//   get        tcache's backend get()            vs  raw hiredis GET of the same Redis key
//   put        tcache's backend put()            vs  raw hiredis SET of the same bytes
//   hit        bcache(.remote = redis) call hit  vs  raw hiredis GET (the two-level hit never
//                                                    leaves the machine)
//   ucache     ucache(.backend = redis) call hit vs  raw hiredis GET
//
// Each pair runs in --rounds alternating rounds (raw, tcache, raw, ...) of
// --ops operations on one thread; the median round of each side is
// reported. Targets (README "Redis tier"): get within 1.2x of raw GET;
// two-level hits at least 20x faster than raw GET.
//
// Usage: tcache-redis-bench [--keys=N] [--ops=N] [--rounds=N] [--value-bytes=N]

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "support/redis_server.h"
#include "tcache/backend.h"
#include "tcache/decorators.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  int keys = 10'000;
  int ops = 20'000;
  int rounds = 5;
  int value_bytes = 100;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    const auto value = [&](const char* name, int& out) {
      const std::string p = std::string("--") + name + "=";
      if (s.rfind(p, 0) != 0) return false;
      out = std::atoi(s.c_str() + p.size());
      return true;
    };
    if (!value("keys", a.keys) && !value("ops", a.ops) && !value("rounds", a.rounds) &&
        !value("value-bytes", a.value_bytes)) {
      std::fprintf(stderr,
                   "usage: tcache-redis-bench [--keys=N] [--ops=N] [--rounds=N] "
                   "[--value-bytes=N]\n");
      std::exit(2);
    }
  }
  a.keys = std::max(a.keys, 1);
  a.ops = std::max(a.ops, 1);
  a.rounds = std::max(a.rounds, 1);
  return a;
}

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out += kHex[static_cast<unsigned char>(c) >> 4];
    out += kHex[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// ns per operation of one round of `ops` calls of fn(i).
double time_round(int ops, const std::function<void(int)>& fn) {
  const auto start = Clock::now();
  for (int i = 0; i < ops; ++i) fn(i);
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / ops;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Pair {
  const char* phase;
  const char* tcache_side;
  const char* raw_side;
  double tcache_ns;
  double raw_ns;
  const char* target;
};

// Alternating rounds: raw, tcache, raw, tcache, ...
Pair run_pair(const char* phase, const char* tcache_side, const char* raw_side, const char* target,
              const Args& a, const std::function<void(int)>& tcache_op,
              const std::function<void(int)>& raw_op) {
  time_round(std::min(a.ops, 2000), raw_op);  // warm-up
  time_round(std::min(a.ops, 2000), tcache_op);
  std::vector<double> t, r;
  for (int round = 0; round < a.rounds; ++round) {
    r.push_back(time_round(a.ops, raw_op));
    t.push_back(time_round(a.ops, tcache_op));
  }
  return {phase, tcache_side, raw_side, median(t), median(r), target};
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  char dir_template[] = "/tmp/tcache-redis-bench.XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) {
    std::perror("tcache-redis-bench: mkdtemp");
    return 2;
  }
  const std::filesystem::path dir = dir_template;
  int status = 0;
  try {
    tcache::test::RedisServer server(dir);
    const std::string uri = server.uri();
    tcache::RedisOptions options;
    options.key_prefix = "bench:";
    options.compress_threshold = 0;  // raw GET moves the same bytes either way
    auto backend = tcache::make_redis_backend(uri, options);

    std::vector<std::string> keys(static_cast<std::size_t>(a.keys));
    std::vector<std::string> redis_keys(keys.size());
    const std::string value(static_cast<std::size_t>(a.value_bytes), 'v');
    for (std::size_t i = 0; i < keys.size(); ++i) {
      char k[32];
      std::snprintf(k, sizeof k, "key:%08zu", i);
      keys[i] = k;
      redis_keys[i] = "bench:" + hex(keys[i]);
      backend->put(keys[i], value, std::chrono::milliseconds(0));
    }
    std::mt19937_64 rng(42);
    std::vector<int> order(static_cast<std::size_t>(a.ops));
    for (auto& o : order) o = static_cast<int>(rng() % keys.size());

    tcache::test::RawRedis raw(server.port());
    redisContext* ctx = raw.context();
    const auto raw_get = [&](int i) {
      const std::string& k =
          redis_keys[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])];
      const char* argv2[] = {"GET", k.data()};
      const std::size_t lens[] = {3, k.size()};
      auto* r = static_cast<redisReply*>(redisCommandArgv(ctx, 2, argv2, lens));
      if (r == nullptr || r->type != REDIS_REPLY_STRING) std::abort();
      freeReplyObject(r);
    };
    std::string sealed;  // the bytes tcache stores for `value`, for raw SET
    {
      const auto got = raw.string({"GET", redis_keys[0]});
      if (!got) throw std::runtime_error("the fill did not reach Redis");
      sealed = *got;
    }
    const auto raw_set = [&](int i) {
      const std::string& k =
          redis_keys[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])];
      const char* argv3[] = {"SET", k.data(), sealed.data()};
      const std::size_t lens[] = {3, k.size(), sealed.size()};
      auto* r = static_cast<redisReply*>(redisCommandArgv(ctx, 3, argv3, lens));
      if (r == nullptr || r->type != REDIS_REPLY_STATUS) std::abort();
      freeReplyObject(r);
    };
    std::string out;
    const auto tcache_get = [&](int i) {
      if (!backend->get(keys[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])], out)) {
        std::abort();
      }
    };
    const auto tcache_put = [&](int i) {
      backend->put(keys[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])], value,
                   std::chrono::milliseconds(0));
    };

    // Decorated calls: values of the same size, keys filled beforehand.
    const auto fn = [&](int) { return value; };
    auto two = tcache::bcache(fn, {.name = "bench-two",
                                   .path = dir / "two.tcache",
                                   .remote = uri,
                                   .capacity_bytes = 64ull << 20});
    auto uc = tcache::ucache(fn, {.name = "bench-u", .backend = uri, .path = dir / "u.tcache"});
    for (int k = 0; k < a.keys; ++k) {
      two(k);
      uc(k);
    }
    const auto two_hit = [&](int i) {
      if (two(order[static_cast<std::size_t>(i)]).size() != value.size()) std::abort();
    };
    const auto ucache_hit = [&](int i) {
      if (uc(order[static_cast<std::size_t>(i)]).size() != value.size()) std::abort();
    };

    std::vector<Pair> pairs;
    pairs.push_back(
        run_pair("get", "backend get()", "raw GET", "<= 1.20x", a, tcache_get, raw_get));
    pairs.push_back(run_pair("put", "backend put()", "raw SET", "", a, tcache_put, raw_set));
    pairs.push_back(
        run_pair("hit", "bcache two-level hit", "raw GET", ">= 20x faster", a, two_hit, raw_get));
    pairs.push_back(run_pair("ucache", "ucache(redis) hit", "raw GET", "", a, ucache_hit, raw_get));

    std::printf(
        "tcache-redis-bench: redis-server on 127.0.0.1:%d, %d keys x %d B, %d ops x %d "
        "rounds per side (median round), one thread\n\n",
        server.port(), a.keys, a.value_bytes, a.ops, a.rounds);
    std::printf("| phase | tcache | ns/op | raw hiredis | ns/op | tcache/raw time | target |\n");
    std::printf("|---|---|---:|---|---:|---:|---|\n");
    for (const Pair& p : pairs) {
      const double ratio = p.tcache_ns / p.raw_ns;
      char ratio_text[64];
      if (ratio < 1.0) {
        std::snprintf(ratio_text, sizeof ratio_text, "%.3fx (%.1fx faster)", ratio, 1.0 / ratio);
      } else {
        std::snprintf(ratio_text, sizeof ratio_text, "%.3fx", ratio);
      }
      std::printf("| %s | %s | %.0f | %s | %.0f | %s | %s |\n", p.phase, p.tcache_side, p.tcache_ns,
                  p.raw_side, p.raw_ns, ratio_text, p.target);
    }
    const auto info = two.cache_info();
    std::printf("\ntwo-level: %llu hits, %llu misses, %llu backend errors\n",
                static_cast<unsigned long long>(info.hits),
                static_cast<unsigned long long>(info.misses),
                static_cast<unsigned long long>(info.backend_errors));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tcache-redis-bench: failed: %s\n", e.what());
    status = 2;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return status;
}
