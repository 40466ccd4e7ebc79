// store/verify.cc: Store::verify and Store::repair (tcache-tool verify).
//
// verify() walks every structure of the file and reports, never changing
// anything:
//   - index slots: a pointer outside the carved pages or off a chunk
//     boundary, a chunk being written (odd version), of another incarnation
//     than the slot's generation bits name, or whose lengths overrun
//     it, a key that hashes to another bucket pair or tag, a checksum
//     mismatch, a blob file missing or damaged, the same key twice;
//   - free lists: a node outside its class's pages, a node that is in use,
//     a cycle;
//   - leaked chunks: carved chunks that neither the index nor a free list
//     reaches (what a process killed between pop and publish leaves); while
//     others write, the chunks whose owner mark names a dead process;
//   - pages claimed but never carved, and dead processes in the table.
// While other processes use the file, free lists change under the walk:
// then they are not judged (report.concurrent says so), and of the leaks
// only those marked by dead writers are.
//
// repair() unpublishes damaged and duplicate slots at once (a CAS per slot,
// safe alongside other processes), returns the chunks that dead writers
// held to their free lists (a CAS on each chunk's owner mark, layout.h;
// also safe alongside others), and sets needs_recovery, so that the next
// process to open the file alone rebuilds free lists, reclaims any other
// leaked chunks and uncarved pages and folds dead processes (recovery.cc).
// tcache-tool verify --repair reopens the file straight away for that.
//
// Thread safety: both may run while other threads and processes use the
// file; verify only reads, repair changes slots only by CAS.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "store/chunk_marks.h"
#include "store/store_impl.h"
#include "util/checksum.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {
namespace {

constexpr std::size_t kMaxProblems = 100;

void note(VerifyReport& r, std::string line) {
  if (r.problems.size() < kMaxProblems) r.problems.push_back(std::move(line));
}

}  // namespace

std::uint64_t StoreImpl::dead_owners_chunks(bool reclaim) {
  // A chunk marked by a writer is its writer's alone until the writer
  // publishes it (writing the entry's meta first) or frees it (writing a
  // free-list link first): while the mark names a dead process, nobody
  // else reaches the chunk, and the CAS on the mark makes one repairer its
  // new owner.
  std::vector<std::pair<std::uint64_t, bool>> seen;  // mark identity, dead
  const auto dead = [&](std::uint64_t mark) {
    const std::uint64_t who = mark & ~kOwnerMarkKeyLen;
    for (const auto& [id, is_dead] : seen) {
      if (id == who) return is_dead;
    }
    const bool is_dead = !process_alive(static_cast<pid_t>(owner_mark_pid(mark)),
                                        owner_mark_start(mark), kOwnerMarkStartMask);
    seen.emplace_back(who, is_dead);
    return is_dead;
  };
  const std::uint64_t pages = std::min(atom<std::uint64_t>(&sb_->next_page).load(), max_pages_);
  std::uint64_t n = 0;
  for (std::uint64_t p = 0; p < pages; ++p) {
    const std::uint32_t cls = atom<std::uint8_t>(&page_table_[p]).load(std::memory_order_acquire);
    if (cls >= class_count_) continue;
    const std::uint32_t size = class_bytes_[cls];
    const std::uint64_t first = pages_offset_ + p * page_bytes_;
    for (std::uint64_t off = first; off + size <= first + page_bytes_; off += size) {
      char* c = chunk(off);
      if ((atom<std::uint32_t>(c).load(std::memory_order_acquire) & 1) == 0) continue;
      auto meta = atom<std::uint64_t>(c + kChunkMetaOffset);
      std::uint64_t mark = meta.load(std::memory_order_acquire);
      if (!is_owner_mark(mark) || !dead(mark)) continue;
      if (!reclaim) {
        ++n;
      } else if (meta.compare_exchange_strong(mark, 0, std::memory_order_acq_rel)) {
        push_chain(cls, off, off);
        ++n;
      }
    }
  }
  return n;
}

const char* StoreImpl::slot_problem(std::uint64_t i, std::uint64_t w, std::string& key) {
  const std::uint64_t off = slot_offset(w);
  const int cls = chunk_class(off);
  if (cls < 0) return "points outside the carved pages or off a chunk boundary";
  const char* c = chunk(off);
  const std::uint32_t version = atom<std::uint32_t>(c).load();
  const std::uint64_t meta = atom<std::uint64_t>(c + kChunkMetaOffset).load();
  const std::uint32_t vf = atom<std::uint32_t>(c + kChunkVlenOffset).load();
  const std::uint32_t sum = atom<std::uint32_t>(c + kChunkChecksumOffset).load();
  const std::uint32_t klen = meta_key_len(meta);
  const std::uint32_t vlen = vf & kValueLenMask;
  if ((version & 1) != 0) return "points at a free chunk or one being written";
  if (!slot_matches(w, version)) return "names another incarnation of its chunk (generation)";
  if (kChunkHeaderBytes + std::uint64_t{klen} + vlen > class_bytes_[cls]) {
    return "chunk's key and value overrun it";
  }
  key.resize(klen);
  racy_read(key.data(), c + kChunkHeaderBytes, klen);
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  const std::uint64_t* bucket = index_ + (i / kSlotsPerBucket) * kSlotsPerBucket;
  if ((s.b[0] != bucket && s.b[1] != bucket) || hash_tag(h) != slot_tag(w)) {
    return "key does not hash to this slot";
  }
  const std::uint64_t seed = h ^ meta ^ (std::uint64_t{vf} << 32);
  if (static_cast<std::uint32_t>(checksum64(c + kChunkHeaderBytes + klen, vlen, seed)) != sum &&
      atom<std::uint32_t>(c).load() == version) {  // not a rewrite under our feet
    return "value checksum mismatch";
  }
  return nullptr;
}

VerifyReport StoreImpl::verify(bool repair) {
  VerifyReport r;
  const std::uint64_t pages = std::min(atom<std::uint64_t>(&sb_->next_page).load(), max_pages_);
  // Chunks reached from the index and from free lists, a window of pages at
  // a time (chunk_marks.h); a page's class as it was when its window began.
  const auto chunk_bytes = [&](std::uint64_t p) -> std::uint32_t {
    const std::uint32_t cls = atom<std::uint8_t>(&page_table_[p]).load(std::memory_order_acquire);
    return cls < class_count_ ? class_bytes_[cls] : 0;
  };
  ChunkMarks live(pages_offset_, page_shift_, chunk_bytes);
  ChunkMarks free(pages_offset_, page_shift_, chunk_bytes);
  std::uint64_t carved_chunks = 0;
  for (std::uint64_t p = 0; p < pages; ++p) {
    const std::uint32_t size = chunk_bytes(p);
    if (size != 0) carved_chunks += page_bytes_ / size;
  }

  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    const std::uint64_t owner = atom<std::uint64_t>(&procs_[i].owner).load();
    if (owner == 0) continue;
    const auto pid = static_cast<pid_t>(owner & 0xffffffffu);
    if (process_alive(pid, atom<std::uint64_t>(&procs_[i].start_time).load())) {
      if (static_cast<int>(i) != proc_slot_) r.concurrent = true;
    } else {
      ++r.dead_processes;
      note(r, "process " + std::to_string(pid) + " died without detaching");
    }
  }

  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  const std::uint64_t now = now_unix_ms();
  std::string key;
  std::string scratch;
  std::vector<bool> broken(class_count_, false);
  // At least one pass: the first also judges the slots that point nowhere
  // valid (and those into pages carved since `pages` was read).
  for (std::uint64_t first = 0, end = 0;; first = end) {
    end = live.start(first, pages);
    free.start(first, pages);
    const bool first_pass = first == 0;

    // Index slots.
    for (std::uint64_t i = 0; i < slots; ++i) {
      const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire);
      if (w == 0) continue;
      const std::uint64_t off = slot_offset(w);
      const bool here = live.covers(off);
      if (!here && !(first_pass && chunk_class(off) < 0)) continue;  // another window's
      ++r.entries;
      const char* why = slot_problem(i, w, key);
      if (why == nullptr && live.test(off)) why = "chunk is reached from two slots";
      if (why == nullptr) {
        // The same key in an earlier slot of its pair?
        const Slots s = slots_for(hash(key));
        for (int j = 0; j < kPairSlots && why == nullptr; ++j) {
          if (&s.at(j) == &index_[i]) break;
          const std::uint64_t o = atom<std::uint64_t>(&s.at(j)).load();
          if (o != 0 && slot_tag(o) == slot_tag(w) && chunk_has_key(s.at(j), o, key) == 1) {
            why = "key is present twice";
            ++r.duplicate_entries;
          }
        }
      } else {
        ++r.damaged_entries;
      }
      if (why == nullptr) {
        live.set(off);
        const char* c = chunk(off);
        const std::uint32_t vf = atom<std::uint32_t>(c + kChunkVlenOffset).load();
        const std::uint64_t meta = atom<std::uint64_t>(c + kChunkMetaOffset).load();
        const bool expired = meta_expiry(meta) != 0 && now >= meta_expiry(meta);
        if ((vf & kFlagBlob) != 0 && !expired && (vf & kValueLenMask) == sizeof(BlobRef)) {
          BlobRef ref;
          std::memcpy(&ref, c + kChunkHeaderBytes + meta_key_len(meta), sizeof ref);
          if (!read_blob(hash(key), ref, scratch)) {
            ++r.damaged_entries;
            why = "blob file is missing or damaged";
          }
        }
        if (why == nullptr) continue;
      }
      note(r, "index slot " + std::to_string(i) + ": " + why);
      if (repair && !region_.read_only()) {
        std::uint64_t expected = w;
        if (atom<std::uint64_t>(&index_[i]).compare_exchange_strong(expected, 0)) ++r.repaired;
      }
    }

    // Pages and free lists; leaks. Only judged when nobody else is writing.
    if (!r.concurrent) {
      for (std::uint64_t p = first; p < end; ++p) {
        if (page_table_[p] >= class_count_) {
          ++r.uncarved_pages;
          note(r, "page " + std::to_string(p) + " was claimed but never carved");
        }
      }
      // Each list is walked whole in every window, marking what lies in it.
      for (std::uint32_t cls = 0; cls < class_count_; ++cls) {
        if (broken[cls]) continue;
        std::uint64_t off = head_offset(atom<std::uint64_t>(&classes_[cls].free_head).load());
        std::uint64_t steps = 0;
        while (off != 0) {
          const bool in_window = free.covers(off);
          const char* problem = nullptr;
          if (chunk_class(off) != static_cast<int>(cls)) {
            problem = "points outside its class's pages";
          } else if ((atom<std::uint32_t>(chunk(off)).load() & 1) == 0) {
            problem = "holds a chunk that is in use";
          } else if ((in_window && free.test(off)) || ++steps > carved_chunks + 1) {
            problem = "has a cycle";
          } else if (in_window && live.test(off)) {
            problem = "holds a chunk the index reaches";
          }
          if (problem != nullptr) {
            broken[cls] = true;
            ++r.broken_free_lists;
            note(r, "free list of the " + std::to_string(class_bytes_[cls]) + "-byte class " +
                        problem);
            break;
          }
          if (in_window) free.set(off);
          off = atom<std::uint64_t>(chunk(off) + kChunkMetaOffset).load() * kChunkAlign;
        }
      }
      for (std::uint64_t p = first; p < end; ++p) {
        const std::uint32_t cls = page_table_[p];
        if (cls >= class_count_) continue;
        const std::uint32_t size = class_bytes_[cls];
        const std::uint64_t page_start = pages_offset_ + p * page_bytes_;
        for (std::uint64_t off = page_start; off + size <= page_start + page_bytes_; off += size) {
          if (live.covers(off) && !live.test(off) && !free.test(off)) ++r.leaked_chunks;
        }
      }
    }
    if (end >= pages) break;
  }
  if (!r.concurrent) {
    if (r.leaked_chunks != 0 && r.broken_free_lists == 0) {
      note(r, std::to_string(r.leaked_chunks) +
                  " chunks are neither in the index nor on a free list (leaked by a process "
                  "that died mid-write)");
    }
  } else if ((r.leaked_chunks = dead_owners_chunks(false)) != 0) {
    // While others write, only the chunks that dead writers held are
    // certainly leaked.
    note(r, std::to_string(r.leaked_chunks) +
                " chunks are held by processes that died mid-write (leaked)");
  }
  if (repair && !region_.read_only() && r.leaked_chunks != 0) {
    r.reclaimed_chunks = dead_owners_chunks(true);
  }

  if (repair && !region_.read_only() && !r.clean()) {
    atom<std::uint64_t>(&sb_->needs_recovery).store(1);
  }
  return r;
}

}  // namespace tcache::detail
