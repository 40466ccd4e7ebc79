// store/walk.cc: whole-index walks and statistics. for_each_entry and the
// operations built on it (erase_prefix, count_prefix, purge_expired,
// for_each), the store's counters and occupancy (stats, class_stats,
// processes), and folding a process's counters into the totals.
//
// Layer 7 (store_impl.h, "Rooms"): calls the index (probe, unlink, hash,
// slots_for, entry_live). Safe from any thread of any process; a walk sees
// each slot once, as it is when visited (not a snapshot).

#include <string>
#include <vector>

#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"
#include "util/test_hook.h"

namespace tcache::detail {

template <class Fn>
void StoreImpl::for_each_entry(Fn&& fn) {
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  std::string key;
  for (std::uint64_t i = 0; i < slots; ++i) {
    const std::uint64_t now = now_unix_ms();
    std::uint64_t& slot = index_[i];
    for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
      if (w == 0) break;
      const std::uint64_t off = slot_offset(w);
      const int cls = chunk_class(off);
      if (cls < 0) break;
      const char* c = chunk(off);
      const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
      if ((v1 & 1) != 0) continue;
      if (!slot_matches(w, v1)) {  // moved on (look again) or damaged (skip)
        if (atom<std::uint64_t>(&slot).load(std::memory_order_acquire) != w) continue;
        break;
      }
      const std::uint64_t meta =
          atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
      const std::uint32_t vf =
          atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
      const std::uint32_t klen = meta_key_len(meta);
      if (kChunkHeaderBytes + klen > class_bytes_[cls]) break;
      key.resize(klen);
      racy_read(key.data(), c + kChunkHeaderBytes, klen);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) continue;
      fn(slot, w, std::string_view(key), meta, vf, now);
      break;
    }
  }
}

std::uint64_t StoreImpl::erase_prefix(std::string_view prefix) {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to erase");
  }
  std::uint64_t n = 0;
  for_each_entry([&](std::uint64_t& slot, std::uint64_t w, std::string_view key, std::uint64_t meta,
                     std::uint32_t vf, std::uint64_t now) {
    // A live lease stays: its holder's computation is in flight, and
    // erasing it would make its waiters compute the value again.
    const bool live_lease =
        (vf & kFlagLease) != 0 && (meta_expiry(meta) == 0 || now < meta_expiry(meta));
    if (key.starts_with(prefix) && !live_lease && unlink(slot, w) && entry_live(meta, vf, now)) {
      ++n;
    }
  });
  count(kErases, n);
  return n;
}

std::uint64_t StoreImpl::count_prefix(std::string_view prefix) {
  std::uint64_t n = 0;
  for_each_entry([&](std::uint64_t&, std::uint64_t, std::string_view key, std::uint64_t meta,
                     std::uint32_t vf, std::uint64_t now) {
    if (entry_live(meta, vf, now) && key.starts_with(prefix)) ++n;
  });
  return n;
}

std::uint64_t StoreImpl::purge_expired() {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to purge");
  }
  std::uint64_t n = 0;
  for_each_entry([&](std::uint64_t& slot, std::uint64_t w, std::string_view key, std::uint64_t meta,
                     std::uint32_t, std::uint64_t now) {
    if (meta_expiry(meta) == 0 || now < meta_expiry(meta)) return;
    test_point(TestPoint::content_unlink, key);
    if (unlink(slot, w)) ++n;
  });
  count(kExpirations, n);
  return n;
}

void StoreImpl::for_each(std::string_view prefix, const Store::Visitor& visit) {
  std::string value;
  bool go_on = true;
  for_each_entry([&](std::uint64_t&, std::uint64_t, std::string_view key, std::uint64_t meta,
                     std::uint32_t vf, std::uint64_t now) {
    if (!go_on || !entry_live(meta, vf, now) || !key.starts_with(prefix)) return;
    // A consistent copy of the value (decompressed, blob read, checksum
    // checked) through the same path as get(), counted as neither hit nor
    // miss. The entry may have changed since the scan: report what is there.
    const std::uint64_t h = hash(key);
    const Slots s = slots_for(h);
    Found f;
    Probe p = Probe::retry;
    for (int attempt = 0; attempt < kMaxProbeRetries && p == Probe::retry; ++attempt) {
      p = probe<true>(key, h, s, &value, &f);
    }
    if (p != Probe::hit) return;
    EntryInfo info;
    info.key = key;
    info.value_bytes = value.size();
    info.stored_bytes = f.vlen_flags & kValueLenMask;
    info.compressed = (f.vlen_flags & kFlagCompressed) != 0;
    info.blob = (f.vlen_flags & kFlagBlob) != 0;
    info.expires_at_ms = f.expiry;
    go_on = visit(info, value);
  });
}

StoreStats StoreImpl::stats() const {
  StoreStats st;
  std::uint64_t sum[kCounterCount] = {};
  for (std::uint32_t c = 0; c < kCounterCount; ++c) {
    sum[c] = atom<std::uint64_t>(&sb_->totals[c]).load(std::memory_order_relaxed);
  }
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    const std::uint64_t owner = atom<std::uint64_t>(&procs_[i].owner).load();
    if (owner == 0) continue;
    const std::uint64_t start = atom<std::uint64_t>(&procs_[i].start_time).load();
    if (process_alive(static_cast<pid_t>(owner & 0xffffffffu), start)) {
      ++st.attached_processes;
    }
    for (std::uint32_t c = 0; c < kCounterCount; ++c) {
      sum[c] += atom<std::uint64_t>(&procs_[i].counters[c]).load(std::memory_order_relaxed);
    }
  }
  if (proc_slot_ < 0) {  // read-only or untracked: our own counters are private
    for (std::uint32_t c = 0; c < kCounterCount; ++c) {
      sum[c] += atom<std::uint64_t>(&local_counters_[c]).load(std::memory_order_relaxed);
    }
  }
  st.hits = sum[kHits];
  st.misses = sum[kMisses];
  st.puts = sum[kPuts];
  st.erases = sum[kErases];
  st.evictions = sum[kEvictions];
  st.expirations = sum[kExpirations];
  st.checksum_failures = sum[kChecksumFailures];
  st.grow_failures = sum[kGrowFailures];
  st.recoveries = atom<std::uint64_t>(&sb_->recoveries).load();
  st.blob_bytes = atom<std::uint64_t>(&sb_->blob_bytes).load();

  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  for (std::uint64_t i = 0; i < slots; ++i) {
    const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_relaxed);
    if (w == 0) continue;
    const int cls = chunk_class(slot_offset(w));
    if (cls < 0) continue;
    ++st.entries;
    st.bytes += class_bytes_[cls];
  }
  st.capacity_bytes = sb_->capacity_bytes;
  st.file_bytes = region_.file_size();
  st.index_slots = slots;
  st.page_bytes = page_bytes_;
  st.pages_total = max_pages_;
  st.pages_used = atom<std::uint64_t>(&sb_->next_page).load();
  return st;
}

std::vector<ClassStats> StoreImpl::class_stats() const {
  std::vector<ClassStats> out(class_count_);
  for (std::uint32_t c = 0; c < class_count_; ++c) {
    out[c].chunk_bytes = class_bytes_[c];
    out[c].pages = atom<std::uint64_t>(&classes_[c].pages).load();
    out[c].chunks = out[c].pages * (page_bytes_ / class_bytes_[c]);
  }
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  for (std::uint64_t i = 0; i < slots; ++i) {
    const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_relaxed);
    if (w == 0) continue;
    const int cls = chunk_class(slot_offset(w));
    if (cls >= 0) ++out[static_cast<std::size_t>(cls)].entries;
  }
  return out;
}

std::vector<ProcessInfo> StoreImpl::processes() const {
  std::vector<ProcessInfo> out;
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    const std::uint64_t owner = atom<std::uint64_t>(&procs_[i].owner).load();
    if (owner == 0) continue;
    ProcessInfo p;
    p.pid = static_cast<std::uint32_t>(owner & 0xffffffffu);
    p.alive =
        process_alive(static_cast<pid_t>(p.pid), atom<std::uint64_t>(&procs_[i].start_time).load());
    p.attached_unix_ms = atom<std::uint64_t>(&procs_[i].attached_unix_ms).load();
    out.push_back(p);
  }
  return out;
}

void StoreImpl::fold_counters(ProcessEntry& e) {
  for (std::uint32_t c = 0; c < kCounterCount; ++c) {
    const std::uint64_t v = atom<std::uint64_t>(&e.counters[c]).exchange(0);
    if (v != 0) atom<std::uint64_t>(&sb_->totals[c]).fetch_add(v);
  }
}

}  // namespace tcache::detail
