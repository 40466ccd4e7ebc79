// format/layout.h: the on-disk layout of a tcache file (format version 3).
//
// Everything here is an ABI contract: structs live in a file that several
// processes (and several builds) map at once. Fields are fixed width, there
// are no pointers (only file offsets), contended words sit on their own cache
// lines, and every struct's size and field offsets are static_asserted.
// doc/FORMAT.md is the human description and must agree with this
// file. DO NOT CHANGE a field's offset, width or meaning without bumping
// kFileFormatVersion (see "Bump rules" in doc/FORMAT.md).
//
// Thread safety: the helpers below are pure functions of their arguments.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tcache::detail {

inline constexpr char kMagic[8] = {'T', 'C', 'A', 'C', 'H', 'E', '\0', '\x1a'};
inline constexpr std::uint32_t kFileFormatVersion = 3;  // DO NOT CHANGE without a bump rule
inline constexpr std::uint32_t kEndianCheck = 0x01020304u;

inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::uint64_t kSuperblockBytes = 4096;
inline constexpr std::uint32_t kMaxClasses = 128;
inline constexpr std::uint32_t kMaxProcesses = 256;
inline constexpr std::uint64_t kChunkAlign = 8;  // chunk offsets and sizes are multiples
inline constexpr std::uint32_t kSlotsPerBucket = 8;
inline constexpr std::uint64_t kBucketBytes = 64;
inline constexpr std::uint8_t kPageUnassigned = 0xff;  // page-table byte of an uncarved page

// ---------------------------------------------------------------------------
// Superblock, at file offset 0, 4096 bytes.
//
// The immutable part (up to `header_checksum`) is written once at creation
// and checksummed with XXH3-64; a mismatch is Errc::corrupt_file. The mutable
// part follows on its own cache lines and is changed only with atomic
// operations on naturally aligned 64-bit words.
struct Superblock {
  // --- immutable (checksummed) ---
  char magic[8];                  // kMagic
  std::uint32_t format_version;   // kFileFormatVersion
  std::uint32_t endian_check;     // kEndianCheck as written by the creator
  std::uint32_t layout_hash;      // layout_descriptor_hash() of the creating build
  std::uint32_t page_bytes;       // slab page size, power of two
  std::uint64_t capacity_bytes;   // ceiling of the file size
  std::uint64_t created_unix_ms;  // creation time
  std::uint64_t hash_seed;        // per-file random seed for XXH3 of keys
  std::uint64_t bucket_count;     // index buckets (64 bytes each)
  std::uint64_t class_table_offset;
  std::uint64_t process_table_offset;
  std::uint64_t page_table_offset;  // one byte per page: its size class or kPageUnassigned
  std::uint64_t index_offset;
  std::uint64_t pages_offset;               // first slab page
  std::uint64_t max_pages;                  // pages that fit under capacity_bytes
  std::uint32_t class_count;                // size classes in use (<= kMaxClasses)
  std::uint32_t compress_threshold_unused;  // reserved, zero
  std::uint32_t class_bytes[kMaxClasses];   // chunk size of each class, ascending
  std::uint64_t header_checksum;            // XXH3-64 of bytes [0, offsetof(header_checksum))

  std::uint8_t pad0_[kCacheLine * 14 - 632];

  // --- mutable (atomics, one cache line each where processes contend) ---
  alignas(kCacheLine) std::uint64_t next_page;  // pages carved so far (CAS to claim)
  std::uint64_t file_bytes;                     // bytes allocated with posix_fallocate
  std::uint64_t generation;                     // bumped by recovery and clear
  std::uint64_t recoveries;                     // times a crashed user's leftovers were reclaimed
  std::uint64_t needs_recovery;                 // 1 = a writer died or went untracked
  std::uint64_t blob_bytes;  // bytes in blob files (approximate; recovery recounts)
  // Compaction state: 0, or the compactor's identity and phase (see
  // compaction_word() below and doc/FORMAT.md, "Compaction"). On this cache line
  // because every operation reads it and next_page is read by every lookup.
  std::uint64_t compaction;
  // Processes that work without a process-table entry (the table was full):
  // their writes cannot be drained, so a compaction refuses while it is not 0.
  std::uint64_t untracked_processes;

  // Statistics of processes that have detached or died (folded in).
  alignas(kCacheLine) std::uint64_t totals[8];

  std::uint8_t pad2_[kSuperblockBytes - kCacheLine * 16];
};

// The statistics counters, in the order they appear in ProcessEntry::counters
// and Superblock::totals. DO NOT CHANGE the order (it is in the file).
enum Counter : std::uint32_t {
  kHits = 0,
  kMisses,
  kPuts,
  kErases,
  kEvictions,
  kExpirations,
  kChecksumFailures,
  kGrowFailures,
  kCounterCount,
};

// Per size class state, one cache line each, kMaxClasses of them at
// class_table_offset.
//
// The free-list head is a pair of words changed together by one 16-byte CAS
// (util/atomic128.h): the first chunk's offset / 8 (0 = empty) and an ABA
// tag bumped on every change. With 64 bits the tag never wraps, so a pop
// that read a head and a `next` link and then stalled (SIGSTOP) can never
// install a stale link, however long it stalled.
struct ClassState {
  alignas(16) std::uint64_t free_head;  // first free chunk's offset / 8, 0 = empty
  std::uint64_t free_aba;               // ABA tag of free_head, +1 on every change
  std::uint64_t clock_hand;             // chunk cursor of the CLOCK evictor
  std::uint64_t pages;                  // pages carved for this class
  std::uint8_t pad_[kCacheLine - 32];
};

// One attached process, two cache lines; kMaxProcesses of them at
// process_table_offset. A slot is claimed by CAS of `owner` from 0 to
// (pid | 1 << 32) and released by storing 0. Only its owner writes counters.
struct ProcessEntry {
  std::uint64_t owner;       // 0 = free, else pid in the low 32 bits, 1 in bit 32
  std::uint64_t start_time;  // the owner's start time (clock ticks since boot, /proc/pid/stat)
  std::uint64_t attached_unix_ms;
  // Write operations of this attachment in progress (put, erase, clear, ...):
  // raised before an operation checks Superblock::compaction, lowered after
  // it. A compactor drains it to 0 before its final pass (doc/INVARIANTS.md, 10).
  std::uint64_t writes;
  // How the owner named the file (format version 3): the device and inode
  // of the directory it resolved the name in, and name_hash(final name).
  // A compactor renames its new file over one name only; it refuses while a
  // live user named the file otherwise (a hard link, a bind mount), since
  // that user would not follow (doc/INVARIANTS.md, 10).
  std::uint64_t name_dir_device;
  std::uint64_t name_dir_inode;
  std::uint64_t name_hash;
  std::uint8_t pad_[kCacheLine - 56];
  std::uint64_t counters[8];  // Counter order
};

// A process that finds the process table full works untracked: it holds a
// shared OFD lock (fcntl F_OFD_SETLK) on this byte of the cache file, far
// beyond its end, while it is counted in Superblock::untracked_processes.
// Whoever gets an exclusive lock on the byte knows every counted process
// is dead (the kernel drops the lock with the last descriptor).
inline constexpr std::int64_t kUntrackedLockByte = std::int64_t{1} << 62;

// ---------------------------------------------------------------------------
// Superblock::compaction: 0 = no compaction, else
//   bits 0..21   the compactor's pid
//   bits 22..59  its start time (clock ticks since boot) modulo 2^38
//   bit  60      renamed (with phase 3: kCompactionRenamed)
//   bit  61      reserved, 0
//   bits 62..63  phase: 1 copying (the file is in use as usual), 2 switching
//                (writers wait: the compactor copies what changed), 3
//                committed (the new file is being renamed over this one)
// Phases 2 and 3 mean "superseded": every operation that sees them checks
// whether the path names another file now and, if so, moves to it.
inline constexpr std::uint64_t kCompactorPidMask = (1ull << 22) - 1;
inline constexpr int kCompactorStartShift = 22;
inline constexpr std::uint64_t kCompactorStartMask = (1ull << 38) - 1;
inline constexpr std::uint64_t kCompactionCopying = 1ull << 62;
inline constexpr std::uint64_t kCompactionSwitching = 2ull << 62;
inline constexpr std::uint64_t kCompactionCommitted = 3ull << 62;
inline constexpr std::uint64_t kCompactionPhaseMask = 3ull << 62;
// Bit 60, with phase 3 (format version 3): the compactor renamed its file
// over the name it compacted. A user whose own name still names this file
// then knows the file was replaced under another name.
inline constexpr std::uint64_t kCompactionRenamed = 1ull << 60;

inline constexpr std::uint64_t compaction_word(std::uint64_t pid, std::uint64_t start_time,
                                               std::uint64_t phase) {
  return phase | ((start_time & kCompactorStartMask) << kCompactorStartShift) |
         (pid & kCompactorPidMask);
}
inline constexpr std::uint64_t compaction_phase(std::uint64_t w) {
  return w & kCompactionPhaseMask;
}
// Phase 2 or 3: writers must not write to this file any more.
inline constexpr bool compaction_superseded(std::uint64_t w) { return w >= kCompactionSwitching; }
inline constexpr std::uint32_t compactor_pid(std::uint64_t w) {
  return static_cast<std::uint32_t>(w & kCompactorPidMask);
}
inline constexpr std::uint64_t compactor_start(std::uint64_t w) {
  return (w >> kCompactorStartShift) & kCompactorStartMask;
}

// ---------------------------------------------------------------------------
// Chunk: a slab chunk holding one entry. Chunk offsets are multiples of 8.
//
//   off 0  u32 version     seqlock: odd = free or being written, even = stable
//   off 4  u32 checksum    low 32 bits of XXH3-64(value, seed = key hash ^ meta)
//   off 8  u64 meta        expiry unix ms (high 48 bits) | key length (low 16)
//   off 16 u32 vlen_flags  stored value length (low 28 bits) | flags (high 4)
//   off 20 key bytes, then the stored value bytes
//
// A free chunk keeps an odd version and stores the next free chunk's offset
// / 8 in its meta word.
inline constexpr std::uint32_t kChunkHeaderBytes = 20;
inline constexpr std::uint32_t kChunkVersionOffset = 0;
inline constexpr std::uint32_t kChunkChecksumOffset = 4;
inline constexpr std::uint32_t kChunkMetaOffset = 8;
inline constexpr std::uint32_t kChunkVlenOffset = 16;
inline constexpr std::uint32_t kValueLenMask = (1u << 28) - 1;
inline constexpr std::uint32_t kFlagCompressed = 1u << 28;  // value is [u32 raw length][LZ4 block]
inline constexpr std::uint32_t kFlagBlob = 1u << 29;        // stored value is a BlobRef
inline constexpr std::uint32_t kFlagLease = 1u << 30;       // stored value is a LeaseRecord

// A lease (single flight): the entry of a key whose value one caller is
// computing. Readers treat it as a miss; get_or_lease waits on it. Its
// expiry is the lease's deadline.
struct LeaseRecord {
  std::uint32_t pid;          // holder's process id
  std::uint32_t reserved;     // 0
  std::uint64_t start_time;   // holder's start time (util/proc.h), against pid reuse
  std::uint64_t deadline_ms;  // Unix ms after which the lease may be taken over
};
static_assert(sizeof(LeaseRecord) == 24 && std::is_trivially_copyable_v<LeaseRecord>);

// A value too large for a page lives in a blob file beside the cache file,
// `<file>.blobs/<key hash, 16 hex>-<id, 16 hex>`; its chunk stores this
// reference. With kFlagCompressed the file holds [u32 raw length][LZ4 block].
struct BlobRef {
  std::uint64_t id;            // random, names the file
  std::uint64_t size;          // bytes in the file
  std::uint64_t content_hash;  // XXH3-64 of the file's bytes
};
static_assert(sizeof(BlobRef) == 24 && std::is_trivially_copyable_v<BlobRef>);

inline constexpr std::uint64_t meta_pack(std::uint64_t expiry_ms, std::uint32_t key_len) {
  return (expiry_ms << 16) | key_len;
}
inline constexpr std::uint64_t meta_expiry(std::uint64_t meta) { return meta >> 16; }
inline constexpr std::uint32_t meta_key_len(std::uint64_t meta) {
  return static_cast<std::uint32_t>(meta & 0xffff);
}
inline constexpr std::uint64_t kMaxExpiryMs = (1ull << 48) - 1;

// A chunk a writer has taken (popped, evicted or carved) and not yet
// published or freed keeps an odd version, and its meta word names the
// writer until the entry's own meta is written:
//   bits 0..15   0xffff (no key is that long)
//   bits 16..37  the writer's pid (Linux pids are below 2^22)
//   bits 38..62  the writer's start time (clock ticks since boot) mod 2^25
//   bit  63      1 (a free chunk's next link never sets it)
// Such a chunk whose writer is dead has leaked (the writer was killed before
// it published or freed the chunk); repair() returns it to its free list
// even while other processes use the file (doc/INVARIANTS.md, 11).
inline constexpr std::uint64_t kOwnerMarkKeyLen = 0xffff;
inline constexpr std::uint64_t kOwnerMarkPidMask = (1ull << 22) - 1;
inline constexpr std::uint64_t kOwnerMarkStartMask = (1ull << 25) - 1;
inline constexpr std::uint64_t owner_mark(std::uint32_t pid, std::uint64_t start_time) {
  return (1ull << 63) | ((start_time & kOwnerMarkStartMask) << 38) |
         ((pid & kOwnerMarkPidMask) << 16) | kOwnerMarkKeyLen;
}
inline constexpr bool is_owner_mark(std::uint64_t meta) {
  return (meta >> 63) != 0 && (meta & 0xffff) == kOwnerMarkKeyLen;
}
inline constexpr std::uint32_t owner_mark_pid(std::uint64_t meta) {
  return static_cast<std::uint32_t>((meta >> 16) & kOwnerMarkPidMask);
}
inline constexpr std::uint64_t owner_mark_start(std::uint64_t meta) {
  return (meta >> 38) & kOwnerMarkStartMask;
}

// ---------------------------------------------------------------------------
// Index slot: one 64-bit word; 0 = empty.
//   bits 0..36  chunk offset / 8 (files up to 1 TiB)
//   bit  37     CLOCK reference bit
//   bits 38..49 generation: bits 1..12 of the chunk's version when it was
//               published (which incarnation of the chunk the slot means)
//   bits 50..63 tag: low 14 bits of the key's hash
// The generation makes every CAS on a slot word specific to one incarnation
// of its chunk: a chunk is retired (version odd) and rewritten (version
// even again) before it can be published anew, so the next word for the
// same chunk in the same slot differs unless 2^12 incarnations of that
// chunk have passed (doc/INVARIANTS.md, 3). A slot whose generation does not
// match its chunk's version is stale or damaged and never read.
inline constexpr int kAddrBits = 37;
inline constexpr std::uint64_t kAddrMask = (1ull << kAddrBits) - 1;
inline constexpr std::uint64_t kRefBit = 1ull << kAddrBits;
inline constexpr int kGenShift = 38;
inline constexpr int kGenBits = 12;
inline constexpr std::uint64_t kGenMask = (1ull << kGenBits) - 1;
inline constexpr int kTagShift = kGenShift + kGenBits;  // 50
inline constexpr std::uint64_t kTagMask = (1ull << (64 - kTagShift)) - 1;
inline constexpr std::uint64_t kMaxFileBytes = (kAddrMask + 1) * kChunkAlign;  // 1 TiB

// The generation of a chunk version: bits 1..12 (bit 0 is the seqlock's
// odd/even; every incarnation advances the version by at least 2).
inline constexpr std::uint64_t version_gen(std::uint32_t version) {
  return (version >> 1) & kGenMask;
}
// The word that publishes chunk `chunk_off` with version `version` (even)
// for a key of tag `tag`.
inline constexpr std::uint64_t slot_make(std::uint64_t tag, std::uint64_t chunk_off,
                                         std::uint32_t version) {
  return (tag << kTagShift) | (version_gen(version) << kGenShift) | (chunk_off / kChunkAlign);
}
inline constexpr std::uint64_t slot_offset(std::uint64_t w) {
  return (w & kAddrMask) * kChunkAlign;
}
inline constexpr std::uint64_t slot_tag(std::uint64_t w) { return w >> kTagShift; }
inline constexpr std::uint64_t slot_gen(std::uint64_t w) { return (w >> kGenShift) & kGenMask; }
// The slot word was made for this version of its chunk (up to 2^12 reuses).
inline constexpr bool slot_matches(std::uint64_t w, std::uint32_t version) {
  return slot_gen(w) == version_gen(version);
}
inline constexpr std::uint64_t hash_tag(std::uint64_t h) { return h & kTagMask; }

// ClassState::free_head (and a free chunk's next link): chunk offset / 8.
inline constexpr std::uint64_t head_link(std::uint64_t chunk_off) {
  return chunk_off / kChunkAlign;
}
inline constexpr std::uint64_t head_offset(std::uint64_t link) {
  return (link & kAddrMask) * kChunkAlign;
}

// Bucket pair for a hash: the entry lives in one of two buckets.
inline std::uint64_t bucket_of(std::uint64_t x, std::uint64_t bucket_count) {
  __extension__ using u128 = unsigned __int128;
  return static_cast<std::uint64_t>((static_cast<u128>(x) * bucket_count) >> 64);
}
inline std::uint64_t second_hash(std::uint64_t h) {
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return h;
}

// A hash of this build's struct sizes and field offsets; files created by a
// build with a different layout are refused (Errc::version_mismatch).
std::uint32_t layout_descriptor_hash();

static_assert(sizeof(Superblock) == kSuperblockBytes);
static_assert(offsetof(Superblock, next_page) == kCacheLine * 14);
static_assert(offsetof(Superblock, compaction) == kCacheLine * 14 + 48);
static_assert(offsetof(Superblock, untracked_processes) == kCacheLine * 14 + 56);
static_assert(offsetof(Superblock, totals) == kCacheLine * 15);
static_assert(offsetof(ProcessEntry, writes) == 24);
static_assert(offsetof(ProcessEntry, name_dir_device) == 32);
static_assert(offsetof(ProcessEntry, name_hash) == 48);
static_assert(offsetof(Superblock, header_checksum) == 624);
static_assert(sizeof(ClassState) == kCacheLine);
static_assert(offsetof(ClassState, free_head) == 0 && offsetof(ClassState, free_aba) == 8);
static_assert(offsetof(ClassState, clock_hand) == 16 && offsetof(ClassState, pages) == 24);
static_assert(kSuperblockBytes % alignof(ClassState) == 0);
static_assert(sizeof(ProcessEntry) == 2 * kCacheLine);
static_assert(std::is_standard_layout_v<Superblock> && std::is_trivially_copyable_v<Superblock>);
static_assert(std::is_standard_layout_v<ProcessEntry> && std::is_standard_layout_v<ClassState>);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(kCounterCount <= 8);

}  // namespace tcache::detail
