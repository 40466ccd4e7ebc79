// tcache/tcache.h: the umbrella header. Include this one.
//
// tcache is a persistent, memory-mapped cache that processes on one machine
// share through a file. See store.h for tcache::Store, error.h for
// tcache::Error, compact.h for tcache::compact (shrinking a file while it is
// in use), codec.h for tcache::Codec (canonical encoding of values),
// decorators.h for the memoizing wrappers (mcache, bcache, fcache, acache,
// ucache), backend.h for the backends they use (memory, file, Redis,
// tiered) and config.h for their defaults (TCACHE_* environment,
// ScopedConfig).
//
// Caveats (read these once):
//
// - fork(): a Store opened before fork() cannot be used by the child: every
//   operation on it there throws Errc::forked, and destroying it in the child
//   leaves the parent attached (the parent's handle stays valid). The child
//   opens its own (Store::open in the child).
// - Paths: a relative path is resolved once, at open (chdir() later changes
//   nothing). Every process should open a file by the same path: compaction
//   refuses while one uses it through a hard link or a bind mount (docker -v
//   of the single file), since the rename would not reach it.
// - Network file systems (NFS, SMB, sshfs) do not keep memory-mapped writes
//   of different machines coherent; use tcache files on local disks or tmpfs
//   only. Sharing across machines is what the Redis tier is for.
// - Compaction (compact.h) relies on process ids: every process using a file
//   must see the others' pids (one pid namespace, as for leases and the
//   process table). A Store keeps the files it moved away from mapped until
//   it is destroyed. A process stopped (SIGSTOP, a debugger) in the middle of
//   a write makes a compaction fail with Errc::busy at once; a stopped
//   compactor is broken off by the writers.
// - Killed processes: SIGKILL at any instant never leaves a torn or wrong
//   value. It may leak the one chunk the process was writing; the leak is
//   reclaimed when the file is next opened by a process that finds itself
//   alone (the open then takes a little longer), or by
//   `tcache-tool verify --repair`.
// - Permissions and umask: new files get exactly StoreOptions::mode (0600 by
//   default) whatever the umask; a file owned by another user or writable by
//   group/other is refused unless StoreOptions::allow_shared_access. The blob
//   directory and blob files follow the cache file's mode and group (a
//   group-writable file gets a setgid, group-writable blob directory).
// - Reserved address space: open() reserves capacity_bytes of virtual
//   address space for the mapping, whatever the file's current size. Many
//   large caches in one 64-bit process are fine; 32-bit builds are not
//   supported.
// - Disk space: the file grows with fallocate(2) before new pages are used,
//   so a full disk makes puts evict (counted as grow_failures), never raises
//   SIGBUS. A writable open allocates any holes of a sparse copy of the file
//   (or throws no_space when the disk has no room for them). Truncating the
//   file from outside while it is open, or punching holes in it, does raise
//   SIGBUS.
// - File systems: one without fallocate(2) (NFSv3, many FUSE mounts) is
//   refused for writing (Errc::unsupported_file_system): growing a file there
//   could only be emulated by writing zeros over other processes' data.
// - Clocks: TTLs are wall-clock (CLOCK_REALTIME) deadlines, so they survive
//   restarts; setting the clock forward expires entries early.
// - Redis (backend.h, make_redis_backend; the decorators' redis:// backend
//   and bcache's `remote`): an unreachable or stalled server never makes a
//   call fail, but invalidate() and cache_clear() made while it is away do
//   not reach it, so its copies live until their TTL. Redis TTLs follow the
//   server's clock. Redis Cluster is not supported yet.

#pragma once

#include "tcache/backend.h"
#include "tcache/codec.h"
#include "tcache/compact.h"
#include "tcache/config.h"
#include "tcache/decorators.h"
#include "tcache/dump.h"
#include "tcache/error.h"
#include "tcache/store.h"
#include "tcache/version.h"
