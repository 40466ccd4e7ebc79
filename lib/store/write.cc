// store/write.cc: the writes of one key or of everything: put (checks,
// TTL, compression), store_entry (a chunk written and published), erase and
// clear.
//
// Layer 5 (store_impl.h, "Rooms"): calls evict.cc (allocate), the index
// (publish, chunk_has_key, unlink) and blob files (write_blob). Safe from any
// thread of any process; a write runs inside enter_write()/leave_write()
// (Store::write, doc/INVARIANTS.md, 10).

#include <lz4.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {

namespace {

// Compressing the first KiB says cheaply whether the whole value will
// compress: random or already-compressed data is stored as it is without
// paying LZ4 over all of it (a put of 4 KiB of random bytes spent most of its
// time in LZ4 before).
bool worth_compressing(std::string_view value) {
  constexpr int kSample = 1024;
  if (value.size() < 2 * kSample) return true;
  char out[LZ4_COMPRESSBOUND(kSample)];
  const int n = LZ4_compress_default(value.data(), out, kSample, sizeof out);
  return n > 0 && n < kSample - kSample / 16;
}

}  // namespace

void StoreImpl::put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to write");
  }
  if (key.size() > Store::kMaxKeyBytes) {
    fail(Errc::key_too_large, "key of " + std::to_string(key.size()) + " bytes exceeds the " +
                                  std::to_string(Store::kMaxKeyBytes) +
                                  "-byte limit; hash long keys before storing them");
  }
  if (value.size() > max_value_bytes()) {
    fail(Errc::value_too_large,
         "value of " + std::to_string(value.size()) + " bytes exceeds the " +
             std::to_string(max_value_bytes()) + "-byte limit of '" + region_.path().string() +
             "' (its capacity_bytes); store it elsewhere or raise capacity_bytes");
  }
  if (ttl.count() < 0) fail(Errc::invalid_option, "ttl must not be negative");
  if (ttl.count() == 0) ttl = options_.default_ttl;
  std::uint64_t expiry = 0;
  if (ttl.count() > 0) {
    expiry = std::min<std::uint64_t>(now_unix_ms() + static_cast<std::uint64_t>(ttl.count()),
                                     kMaxExpiryMs);
  }

  std::string_view stored = value;
  std::uint32_t flags = 0;
  if (options_.compress_threshold != 0 && value.size() >= options_.compress_threshold &&
      value.size() <= static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE) && worth_compressing(value)) {
    std::string& buf = scratch();
    const int bound = LZ4_compressBound(static_cast<int>(value.size()));
    buf.resize(4 + static_cast<std::size_t>(bound));
    const auto raw = static_cast<std::uint32_t>(value.size());
    std::memcpy(buf.data(), &raw, 4);
    const int n =
        LZ4_compress_default(value.data(), buf.data() + 4, static_cast<int>(value.size()), bound);
    if (n > 0 && static_cast<std::size_t>(n) + 4 < value.size() && raw <= kValueLenMask) {
      stored = std::string_view(buf.data(), static_cast<std::size_t>(n) + 4);
      flags = kFlagCompressed;
    }
  }
  const std::uint64_t h = hash(key);
  {
    // The bucket pair is needed at publish; fetch it while the chunk is
    // allocated and written.
    const Slots s = slots_for(h);
    prefetch(s.b[0]);
    prefetch(s.b[1]);
  }
  store_entry(key, h, stored, flags, expiry, Publish::upsert);
  count(kPuts);
}

bool StoreImpl::store_entry(std::string_view key, std::uint64_t h, std::string_view stored,
                            std::uint32_t flags, std::uint64_t expiry, Publish mode) {
  BlobRef ref{};
  if (kChunkHeaderBytes + key.size() + stored.size() > page_bytes_) {
    ref = write_blob(h, stored);
    stored = std::string_view(reinterpret_cast<const char*>(&ref), sizeof ref);
    flags |= kFlagBlob;
  }
  const std::uint64_t need = kChunkHeaderBytes + key.size() + stored.size();
  const std::uint32_t cls = class_for(need);
  std::uint64_t off;
  try {
    off = allocate(cls);
  } catch (...) {
    if ((flags & kFlagBlob) != 0) {
      ::unlink(blob_path(h, ref.id, false).c_str());
      atom<std::uint64_t>(&sb_->blob_bytes).fetch_sub(ref.size);
    }
    throw;
  }

  // The chunk is ours alone (its version is odd). The release fence orders
  // the odd version that whoever freed it wrote before our writes, for any
  // reader still holding the old address (seqlock writer protocol).
  std::atomic_thread_fence(std::memory_order_release);
  char* c = chunk(off);
  const std::uint64_t meta = meta_pack(expiry, static_cast<std::uint32_t>(key.size()));
  const std::uint32_t vf = static_cast<std::uint32_t>(stored.size()) | flags;
  racy_write(c + kChunkHeaderBytes, key.data(), key.size());
  racy_write(c + kChunkHeaderBytes + key.size(), stored.data(), stored.size());
  atom<std::uint64_t>(c + kChunkMetaOffset).store(meta, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkVlenOffset).store(vf, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkChecksumOffset)
      .store(value_checksum(stored.data(), stored.size(), h, meta, vf), std::memory_order_relaxed);
  auto version = atom<std::uint32_t>(c);
  version.store((version.load(std::memory_order_relaxed) | 1) + 1, std::memory_order_release);

  return publish(key, h, off, mode);
}

bool StoreImpl::erase(std::string_view key) {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to erase");
  }
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  bool erased = false;
  for (int i = 0; i < kPairSlots; ++i) {
    std::uint64_t& slot = s.at(i);
    for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != hash_tag(h)) break;
      const int has = chunk_has_key(slot, w, key);
      if (has == 0) break;
      if (has == 1 && unlink(slot, w)) {
        erased = true;
        break;
      }
    }
  }
  if (erased) count(kErases);
  return erased;
}

void StoreImpl::clear() {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to clear");
  }
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  std::uint64_t n = 0;
  for (std::uint64_t i = 0; i < slots; ++i) {
    std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire);
    while (w != 0) {
      if (unlink(index_[i], w)) {
        ++n;
        break;
      }
      w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire);
    }
  }
  count(kErases, n);
  atom<std::uint64_t>(&sb_->generation).fetch_add(1);
}

}  // namespace tcache::detail
