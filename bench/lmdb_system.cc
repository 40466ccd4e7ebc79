#include "lmdb_system.h"

#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace tcache_bench {

namespace {

void check(int rc, const char* what) {
  if (rc != MDB_SUCCESS)
    throw std::runtime_error(fmt::format("lmdb: {}: {}", what, mdb_strerror(rc)));
}

MDB_val as_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

}  // namespace

std::size_t LmdbSystem::map_bytes(const DataSetSpec& spec) {
  // The map size is a hard limit in LMDB, so it is sized generously: a value
  // larger than about a quarter page goes to overflow pages of its own, and
  // B-tree leaves of small entries may be half empty after splits. With
  // WRITEMAP the file is truncated up to this size, but sparsely.
  const std::size_t page = 4096;
  const std::size_t per_entry = spec.value_bytes > 1000 ? (spec.value_bytes / page + 2) * page
                                                        : (spec.entry_bytes() + 64) * 2;
  const std::size_t bytes = spec.keys * per_entry * 3 / 2 + (64u << 20);
  return (bytes + page - 1) / page * page;
}

LmdbSystem LmdbSystem::create(const std::filesystem::path& file, const DataSetSpec& spec,
                              std::size_t fill_txn_puts) {
  for (const auto& f : files(file)) std::filesystem::remove(f);
  return LmdbSystem(file, spec, true, fill_txn_puts);
}

LmdbSystem LmdbSystem::open(const std::filesystem::path& file, const DataSetSpec& spec) {
  return LmdbSystem(file, spec, false, kFillBatch);
}

LmdbSystem::LmdbSystem(const std::filesystem::path& file, const DataSetSpec& spec, bool create,
                       std::size_t fill_txn_puts)
    : fill_txn_puts_(fill_txn_puts == 0 ? 1 : fill_txn_puts) {
  check(mdb_env_create(&env_), "mdb_env_create");
  try {
    check(mdb_env_set_mapsize(env_, map_bytes(spec)), "mdb_env_set_mapsize");
    check(mdb_env_open(env_, file.c_str(), kEnvFlags, 0600), "mdb_env_open");
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    int rc = mdb_dbi_open(txn, nullptr, create ? MDB_CREATE : 0, &dbi_);
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      check(rc, "mdb_dbi_open");
    }
    check(mdb_txn_commit(txn), "mdb_txn_commit");
    check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_txn_), "mdb_txn_begin(read)");
    mdb_txn_reset(read_txn_);
  } catch (...) {
    mdb_env_close(env_);
    throw;
  }
}

LmdbSystem::LmdbSystem(LmdbSystem&& other) noexcept
    : env_(std::exchange(other.env_, nullptr)),
      dbi_(other.dbi_),
      read_txn_(std::exchange(other.read_txn_, nullptr)),
      fill_txn_puts_(other.fill_txn_puts_) {}

LmdbSystem::~LmdbSystem() {
  if (read_txn_ != nullptr) mdb_txn_abort(read_txn_);
  if (env_ != nullptr) mdb_env_close(env_);
}

void LmdbSystem::fill(const KeySequence& keys, const ValuePool& values) {
  // No MDB_APPEND even though the keys arrive sorted: a cache's put cannot
  // promise sorted keys, so the fill uses the ordinary insert path.
  std::size_t i = 0;
  while (i < keys.size()) {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    const std::size_t end = std::min(keys.size(), i + fill_txn_puts_);
    for (; i < end; ++i) {
      MDB_val k = as_val(keys[i]);
      MDB_val v = as_val(values.for_key(i));
      int rc = mdb_put(txn, dbi_, &k, &v, 0);
      if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        check(rc, "mdb_put");
      }
    }
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
}

void LmdbSystem::put(std::string_view key, std::string_view value) {
  MDB_txn* txn = nullptr;
  check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
  MDB_val k = as_val(key);
  MDB_val v = as_val(value);
  int rc = mdb_put(txn, dbi_, &k, &v, 0);
  if (rc != MDB_SUCCESS) {
    mdb_txn_abort(txn);
    check(rc, "mdb_put");
  }
  check(mdb_txn_commit(txn), "mdb_txn_commit");
}

bool LmdbSystem::get(std::string_view key, std::string& value) {
  check(mdb_txn_renew(read_txn_), "mdb_txn_renew");
  MDB_val k = as_val(key);
  MDB_val v;
  int rc = mdb_get(read_txn_, dbi_, &k, &v);
  // The value points into the map and stays valid only while the read
  // transaction is live, so it is copied out before the reset.
  if (rc == MDB_SUCCESS) value.assign(static_cast<const char*>(v.mv_data), v.mv_size);
  mdb_txn_reset(read_txn_);
  if (rc == MDB_NOTFOUND) return false;
  check(rc, "mdb_get");
  return true;
}

void LmdbSystem::get_batch(std::span<const std::string_view> keys, std::span<std::string> values,
                           std::span<bool> found) {
  check(mdb_txn_renew(read_txn_), "mdb_txn_renew");
  for (std::size_t i = 0; i < keys.size(); ++i) {
    MDB_val k = as_val(keys[i]);
    MDB_val v;
    int rc = mdb_get(read_txn_, dbi_, &k, &v);
    found[i] = rc == MDB_SUCCESS;
    if (found[i]) {
      values[i].assign(static_cast<const char*>(v.mv_data), v.mv_size);
    } else if (rc != MDB_NOTFOUND) {
      mdb_txn_reset(read_txn_);
      check(rc, "mdb_get");
    }
  }
  mdb_txn_reset(read_txn_);
}

void LmdbSystem::sync() { check(mdb_env_sync(env_, 1), "mdb_env_sync"); }

std::uint64_t LmdbSystem::reported_used_bytes() const {
  MDB_envinfo info;
  MDB_stat stat;
  check(mdb_env_info(env_, &info), "mdb_env_info");
  check(mdb_env_stat(env_, &stat), "mdb_env_stat");
  return static_cast<std::uint64_t>(info.me_last_pgno + 1) * stat.ms_psize;
}

std::vector<std::filesystem::path> LmdbSystem::files(const std::filesystem::path& file) {
  return {file, std::filesystem::path(file.string() + "-lock")};
}

}  // namespace tcache_bench
