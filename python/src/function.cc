// _tcache.Function: the C++ core of the persistent Python decorators
// (bcache, fcache, ucache, acache). It resolves its backend exactly as the
// C++ decorator of its kind (lib/decorators/setup.cc), makes the keys with
// make_key over the codec's bytes of the bound arguments, and frames values
// as the C++ decorators do (byte_state.h), so a C++ and a Python decorator
// of one name and version share entries when their types map.
//
// Thread safety: a Function may be used from any number of Python threads;
// calls hold the GIL except while a lease is waited for. A lease token may be
// completed (store/abandon) from another thread than the one that took it:
// it carries the detail::LeaseHolder it was taken as, and completes under
// an ActAsLeaseHolder of it (detail/lease_holder.h), since the memory and
// Redis backends end a lease only for its holder.
// Process safety: a forked child resolves its backend again at its next
// call (the parent's files and connections are not used there).

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bindings.h"
#include "codec.h"
#include "convert.h"
#include "errors.h"
#include "raw_call.h"
#include "tcache/config.h"
#include "tcache/decorators.h"
#include "tcache/detail/async_state.h"
#include "tcache/detail/byte_state.h"
#include "tcache/detail/lease_holder.h"

namespace pyb = pybind11;

namespace tcache::py {
namespace {

// Values at least this large are put with the GIL released.
constexpr std::size_t kReleaseGilBytes = 256 * 1024;

// Causes of warnings that are not Errc values (Warner groups by cause).
constexpr std::uint32_t kLookupFailure = 0x20000;

using Setup = std::shared_ptr<const detail::ByteSetup>;

// A lease the caller holds on a key (or, inert, none: the call computes
// without caching). Completed by Function.store or Function.abandon, on any
// thread, as `holder` (the holder that took it); one dropped uncompleted
// gives its lease up.
struct Lease {
  Setup setup;  // the backend the lease is in (kept alive by the token)
  std::string key;
  bool held = false;
  detail::LeaseHolder holder = 0;

  Lease(Setup s, std::string_view k, bool h, detail::LeaseHolder who)
      : setup(std::move(s)), key(k), held(h), holder(who) {}
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { release(); }
  void release() noexcept {
    if (held) {
      detail::ActAsLeaseHolder as(holder);
      setup->backend->release_lease(key);
    }
    held = false;
  }
};

// A token for the lease on `key` taken as `holder` (held), or an inert one.
pyb::object lease_object(Setup s, std::string_view key, bool held, detail::LeaseHolder holder = 0) {
  return pyb::cast(std::make_unique<Lease>(std::move(s), key, held, holder));
}

// A lease taken (or a value found) for lookup_nowait on tcache's pool. The
// pool thread takes it as `holder`, a holder of its own (not the pool
// thread's: another lookup on that thread must not find the lease its own),
// and hands it to the caller's Lease token.
struct Pending {
  const detail::LeaseHolder holder = detail::new_lease_holder();
  std::mutex mutex;
  bool done = false;
  bool have = false;      // a value, else the lease (unless error)
  bool orphaned = false;  // nobody will collect it: give a lease up at once
  std::string value;
  std::optional<Error> error;
};

class Function {
 public:
  struct Args {
    std::string kind, name, version;
    std::optional<std::filesystem::path> path, folder;
    pyb::object ttl, maxsize, remote, backend, compress, capacity_bytes;
    double lease_timeout = 60.0;
    pyb::object arg_specs, result_spec, allow_pickle, logger;
  };

  explicit Function(const Args& a);
  ~Function();

  pyb::tuple lookup(pyb::handle bound);
  pyb::tuple lookup_nowait(pyb::handle bound);
  void store(Lease& lease, pyb::handle value);
  void abandon(Lease& lease) { lease.release(); }
  bool invalidate(pyb::handle bound);
  std::uint64_t clear() { return live()->backend->erase_prefix(live()->prefix); }
  std::uint64_t count() { return live()->backend->count_prefix(live()->prefix); }
  pyb::dict info();
  std::string backend_name() { return live()->backend->name(); }
  bool disabled() { return live()->disabled; }
  const std::string& name() const { return name_; }
  const std::string& kind() const { return kind_; }
  bool cpp_types() const { return result_spec_.has_value(); }
  bool allow_pickle() { return live(), allow_pickle_; }

 private:
  Setup live();
  [[gnu::cold]] void resolve();
  detail::ByteSetup setup_for_kind() const;
  // The options every kind's C++ options struct shares, from this Function's.
  template <class Options>
  Options common_options(const std::filesystem::path& path) const {
    Options o;
    o.name = name_;
    o.version = version_;
    o.path = path;
    o.ttl = ttl_;
    o.lease_timeout = lease_timeout_;
    o.logger = logger_;
    return o;
  }
  void key_of(pyb::handle bound, const detail::ByteSetup& s, char (&key)[detail::kKeyBytes]) const;
  // False when caching is off now (TCACHE_DISABLE, a disabling config
  // scope): the call computes without a lease. Else writes the call's key.
  bool caching_key(pyb::handle bound, const detail::ByteSetup& s,
                   char (&key)[detail::kKeyBytes]) const;
  // The value in a stored frame; throws on any decode failure.
  pyb::object decode(std::string_view stored) const;
  // (True, value) for a stored frame that decodes; else erases it, counts a
  // decode error and returns nullopt (look again).
  std::optional<pyb::tuple> hit(const Setup& s, std::string_view key, std::string_view stored);
  pyb::tuple computed_without_cache(const Setup& s, std::string_view key, const Error& e);
  void warn(const Setup& s, std::uint32_t cause, const std::string& what) const;

  std::string kind_, name_, version_;
  std::optional<std::filesystem::path> path_, folder_;
  std::chrono::milliseconds ttl_{0}, lease_timeout_{0};
  std::optional<std::uint64_t> maxsize_, capacity_bytes_;
  std::string remote_, backend_;
  std::optional<bool> compress_, allow_pickle_option_;
  Logger logger_;
  std::optional<std::vector<CppSpec>> arg_specs_;
  std::optional<CppSpec> result_spec_;
  std::uint64_t fingerprint_ = 0;

  Setup setup_;
  std::uint64_t generation_ = 0;
  bool allow_pickle_ = false;
  bool local_ = false;  // no server behind the backend: a get never waits on the network
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, decode_errors_{0}, errors_{0};
  std::mutex pending_mutex_;
  std::unordered_map<std::string, std::shared_ptr<Pending>> pending_;
};

[[noreturn]] void bad_option(const std::string& kind, const std::string& name,
                             const std::string& what) {
  throw Error(Errc::invalid_option, "tcache: " + kind + " '" + name + "': " + what);
}

std::optional<std::string> opt_str(pyb::handle h) {
  if (h.is_none()) return std::nullopt;
  return pyb::cast<std::string>(h);
}

Function::Function(const Args& a)
    : kind_(a.kind),
      name_(a.name),
      version_(a.version),
      path_(a.path),
      folder_(a.folder),
      ttl_(to_ms(a.ttl, "ttl")),
      lease_timeout_(to_ms(pyb::float_(a.lease_timeout), "lease_timeout")),
      remote_(opt_str(a.remote).value_or("")),
      backend_(opt_str(a.backend).value_or("")),
      logger_(to_logger(a.logger)) {
  if (kind_ != "bcache" && kind_ != "fcache" && kind_ != "ucache" && kind_ != "acache") {
    throw Error(Errc::invalid_option,
                "tcache: Function kind must be bcache, fcache, ucache or "
                "acache, not '" +
                    kind_ + "'");
  }
  const bool file_kind = kind_ == "bcache" || kind_ == "fcache";
  if (!a.maxsize.is_none()) {
    if (file_kind) {
      bad_option(kind_, name_,
                 "option 'maxsize' counts entries of the memory caches (mcache, "
                 "ucache, acache); a " +
                     kind_ + " file is bounded by capacity_bytes");
    }
    const auto n = pyb::cast<std::int64_t>(a.maxsize);
    if (n <= 0) bad_option(kind_, name_, "option 'maxsize' must be > 0");
    maxsize_ = static_cast<std::uint64_t>(n);
  }
  if (!a.capacity_bytes.is_none()) {
    if (kind_ == "acache") {
      bad_option(kind_, name_,
                 "option 'capacity_bytes' is not acache's (its file, if any, "
                 "is sized as ucache's default)");
    }
    capacity_bytes_ = to_count(pyb::cast<std::int64_t>(a.capacity_bytes), "capacity_bytes");
  }
  if (!remote_.empty() && kind_ != "bcache") {
    bad_option(kind_, name_,
               "option 'remote' is bcache's; give ucache/acache a Redis URI "
               "as backend=");
  }
  if (!backend_.empty() && file_kind) {
    bad_option(kind_, name_,
               "option 'backend' is ucache's and acache's; " + kind_ +
                   " always uses a file (bcache: remote= for Redis)");
  }
  if (path_ && folder_) {
    bad_option(kind_, name_, "options 'path' and 'folder_name' both place the file; give one");
  }
  if (!a.compress.is_none()) compress_ = pyb::cast<bool>(a.compress);
  if (!a.allow_pickle.is_none()) allow_pickle_option_ = pyb::cast<bool>(a.allow_pickle);
  if (a.arg_specs.is_none() != a.result_spec.is_none()) {
    bad_option(kind_, name_, "arg_specs and result_spec go together (C++ types for all, or None)");
  }
  if (!a.arg_specs.is_none()) {
    std::vector<CppSpec> specs;
    for (pyb::handle s : pyb::reinterpret_borrow<pyb::iterable>(a.arg_specs)) {
      specs.push_back(parse_spec(s));
    }
    arg_specs_ = std::move(specs);
    result_spec_ = parse_spec(a.result_spec);
    fingerprint_ = cpp_fingerprint(*result_spec_);
  } else {
    fingerprint_ = python_fingerprint();
  }
  resolve();
}

Function::~Function() {
  if (!setup_) return;  // a resolve after fork failed: nothing of ours is pending
  std::lock_guard lock(pending_mutex_);
  for (auto& [key, p] : pending_) {
    std::lock_guard plock(p->mutex);
    if (p->done && !p->have && !p->error) {
      detail::ActAsLeaseHolder as(p->holder);
      setup_->backend->release_lease(key);
    }
    p->orphaned = true;
  }
}

detail::ByteSetup Function::setup_for_kind() const {
  // folder_name: a directory under the cache root, or one when absolute;
  // the decorator then names its file there as it would in the root.
  std::optional<ScopedConfig> folder_scope;
  if (folder_) {
    std::filesystem::path dir = *folder_;
    if (dir.is_relative()) {
      const Config cfg = config();
      if (cfg.dir.empty()) {
        bad_option(kind_, name_,
                   "no cache directory for option 'folder_name': set TCACHE_DIR "
                   "(or XDG_CACHE_HOME or HOME), or give an absolute folder");
      }
      dir = cfg.dir / dir;
    }
    folder_scope.emplace(ConfigOverride{.dir = dir});
  }
  const std::filesystem::path path = path_.value_or(std::filesystem::path());
  if (kind_ == "bcache") {
    auto o = common_options<BcacheOptions>(path);
    o.remote = remote_;
    if (capacity_bytes_) o.capacity_bytes = *capacity_bytes_;
    detail::ByteSetup s = detail::bcache_setup(o);
    if (compress_.value_or(false)) s.compression = 1;
    return s;
  }
  if (kind_ == "fcache") {
    auto o = common_options<FcacheOptions>(path);
    o.compress = compress_.value_or(true);
    if (capacity_bytes_) o.capacity_bytes = *capacity_bytes_;
    return detail::fcache_setup(o);
  }
  detail::ByteSetup s;
  if (kind_ == "ucache") {
    auto o = common_options<UcacheOptions>(path);
    o.backend = backend_;
    if (maxsize_) o.maxsize = *maxsize_;
    if (capacity_bytes_) o.capacity_bytes = *capacity_bytes_;
    s = detail::ucache_setup(o);
  } else {
    auto o = common_options<AcacheOptions>(path);
    o.backend = backend_;
    if (maxsize_) o.maxsize = *maxsize_;
    s = detail::acache_setup(o).bytes;
  }
  if (compress_) s.compression = *compress_ ? 1 : 0;
  return s;
}

void Function::resolve() {
  // The old backend (a parent's, after fork) is let go first: its Store
  // in a child only forgets its mapping (store.h, Caveat fork()).
  setup_.reset();
  {
    std::lock_guard lock(pending_mutex_);
    pending_.clear();
  }
  auto s = std::make_shared<const detail::ByteSetup>(setup_for_kind());
  // Pickle by default only where no one else can write the entries: a
  // memory cache, or a file the store opened as the user's own (it refuses
  // group/other-writable and foreign files), never Redis.
  const bool shared = s->backend->name().find("redis") != std::string::npos;
  allow_pickle_ = allow_pickle_option_.value_or(!shared);
  local_ = !shared;
  setup_ = std::move(s);
  generation_ = detail::atfork_generation();
}

Setup Function::live() {
  if (generation_ != detail::atfork_generation()) [[unlikely]]
    resolve();
  return setup_;
}

void Function::key_of(pyb::handle bound, const detail::ByteSetup& s,
                      char (&key)[detail::kKeyBytes]) const {
  static thread_local std::string buf;
  buf.clear();
  if (arg_specs_) {
    cpp_encode_args(bound, *arg_specs_, buf);
  } else {
    encode_key(bound, buf);
  }
  detail::make_key(s, buf, key);
}

pyb::object Function::decode(std::string_view stored) const {
  static thread_local std::string scratch;
  const std::string_view raw = detail::open_value_frame(stored, fingerprint_, scratch);
  if (result_spec_) return cpp_decode(raw, *result_spec_);
  return decode_value(raw, allow_pickle_);
}

void Function::warn(const Setup& s, std::uint32_t cause, const std::string& what) const {
  s->warner->warn(cause, "tcache: " + kind_ + " '" + name_ + "': " + what);
}

std::optional<pyb::tuple> Function::hit(const Setup& s, std::string_view key,
                                        std::string_view stored) {
  try {
    pyb::object v = decode(stored);
    hits_.fetch_add(1, std::memory_order_relaxed);
    return pyb::make_tuple(true, std::move(v));
  } catch (const Error&) {
  } catch (const pyb::error_already_set&) {  // e.g. a str that is not UTF-8
  } catch (const std::exception&) {
  }
  // As in C++: any failure to decode is a miss; the entry goes.
  decode_errors_.fetch_add(1, std::memory_order_relaxed);
  try {
    s->backend->erase(key);
  } catch (const Error&) {  // a failing backend shows up on the next call
  }
  return std::nullopt;
}

pyb::tuple Function::computed_without_cache(const Setup& s, std::string_view key, const Error& e) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  misses_.fetch_add(1, std::memory_order_relaxed);
  warn(s, static_cast<std::uint32_t>(e.code()),
       std::string("lookup failed, calling through: ") + e.what());
  return pyb::make_tuple(false, lease_object(s, key, false));
}

bool Function::caching_key(pyb::handle bound, const detail::ByteSetup& s,
                           char (&key)[detail::kKeyBytes]) const {
  if (s.disabled || detail::disabled_by_scope()) return false;
  key_of(bound, s, key);
  return true;
}

pyb::tuple Function::lookup(pyb::handle bound) {
  const Setup s = live();
  char key[detail::kKeyBytes];
  if (!caching_key(bound, *s, key)) return pyb::make_tuple(false, lease_object(s, {}, false));
  const std::string_view k(key, detail::kKeyBytes);
  static thread_local std::string stored;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool have = false;
    try {
      // A hit in a local backend takes no wait: answered with the GIL held
      // (releasing it costs more than the lookup). Misses, and backends that
      // talk to a server, wait for the lease with the GIL released.
      if (local_ && attempt == 0) have = s->backend->get(k, stored);
      if (!have) {
        pyb::gil_scoped_release nogil;
        have = s->backend->get_or_lease(k, stored, s->lease_timeout);
      }
    } catch (const Error& e) {
      return computed_without_cache(s, k, e);
    }
    if (!have) {  // taken by this thread, as itself: completed as such
      misses_.fetch_add(1, std::memory_order_relaxed);
      return pyb::make_tuple(false, lease_object(s, k, true, detail::current_lease_holder()));
    }
    if (auto found = hit(s, k, stored)) return std::move(*found);
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return pyb::make_tuple(false, lease_object(s, k, false));
}

pyb::tuple Function::lookup_nowait(pyb::handle bound) {
  const Setup s = live();
  char key[detail::kKeyBytes];
  if (!caching_key(bound, *s, key)) return pyb::make_tuple(false, lease_object(s, {}, false));
  const std::string k(key, detail::kKeyBytes);
  std::shared_ptr<Pending> p;
  {
    std::lock_guard lock(pending_mutex_);
    if (auto it = pending_.find(k); it != pending_.end()) {
      std::lock_guard plock(it->second->mutex);
      if (!it->second->done) return pyb::make_tuple(false, pyb::none());
      p = std::move(it->second);
      pending_.erase(it);
    }
  }
  if (p) {  // done: no other thread touches it now
    if (p->error) return computed_without_cache(s, k, *p->error);
    if (!p->have) {  // the pool thread's lease, handed over
      misses_.fetch_add(1, std::memory_order_relaxed);
      return pyb::make_tuple(false, lease_object(s, k, true, p->holder));
    }
    if (auto found = hit(s, k, p->value)) return std::move(*found);
    return pyb::make_tuple(false, pyb::none());  // a bad entry, erased: look again
  }
  // A hit never waits: the store's get sees a lease as a miss.
  static thread_local std::string stored;
  try {
    if (s->backend->get(k, stored)) {
      if (auto found = hit(s, k, stored)) return std::move(*found);
    }
  } catch (const Error& e) {
    return computed_without_cache(s, k, e);
  }
  // A miss: take the lease, or wait for another holder's value, on tcache's
  // pool; the caller looks again (without blocking its event loop).
  p = std::make_shared<Pending>();
  {
    std::lock_guard lock(pending_mutex_);
    pending_.emplace(k, p);
  }
  detail::submit_to_pool([s, p, k] {
    detail::ActAsLeaseHolder as(p->holder);
    bool have = false;
    std::string value;
    std::optional<Error> error;
    try {
      have = s->backend->get_or_lease(k, value, s->lease_timeout);
    } catch (const Error& e) {
      error = e;
    } catch (const std::exception& e) {
      error = Error(Errc::unavailable, std::string("tcache: lookup failed: ") + e.what());
    }
    std::lock_guard plock(p->mutex);
    if (p->orphaned && !have && !error) {
      s->backend->release_lease(k);
    }
    p->have = have;
    p->value = std::move(value);
    p->error = std::move(error);
    p->done = true;
  });
  return pyb::make_tuple(false, pyb::none());
}

void Function::store(Lease& lease, pyb::handle value) {
  if (!lease.held) return;  // computed without caching
  const Setup& s = lease.setup;
  std::string bytes;
  try {
    if (s->compression == 0) {
      detail::begin_value_frame(fingerprint_, bytes);
      if (result_spec_) {
        cpp_encode(value, *result_spec_, bytes);
      } else {
        encode_value(value, allow_pickle_, bytes);
      }
    } else {
      std::string raw;
      if (result_spec_) {
        cpp_encode(value, *result_spec_, raw);
      } else {
        encode_value(value, allow_pickle_, raw);
      }
      detail::pack_value(s->compression, fingerprint_, raw, bytes);
    }
  } catch (...) {
    lease.release();  // others waiting compute themselves
    throw;
  }
  try {
    detail::ActAsLeaseHolder as(lease.holder);  // the put ends the holder's lease
    if (bytes.size() < kReleaseGilBytes) {
      s->backend->put(lease.key, bytes, s->ttl);
    } else {
      pyb::gil_scoped_release nogil;
      s->backend->put(lease.key, bytes, s->ttl);
    }
    lease.held = false;  // the put replaced the lease
  } catch (const Error& e) {
    // The value is returned all the same; the cache just does not keep it.
    errors_.fetch_add(1, std::memory_order_relaxed);
    lease.release();
    warn(s, static_cast<std::uint32_t>(e.code()),
         std::string("could not store a value (") + error_code_name(e.code()) + "): " + e.what());
  }
}

bool Function::invalidate(pyb::handle bound) {
  const Setup s = live();
  char key[detail::kKeyBytes];
  key_of(bound, *s, key);
  return s->backend->erase(std::string_view(key, detail::kKeyBytes));
}

pyb::dict Function::info() {
  const Setup s = live();
  pyb::dict d;
  d["hits"] = hits_.load(std::memory_order_relaxed);
  d["misses"] = misses_.load(std::memory_order_relaxed);
  d["decode_errors"] = decode_errors_.load(std::memory_order_relaxed);
  d["maxsize"] = s->backend->max_entries();
  d["currsize"] = s->backend->count_prefix(s->prefix);
  d["backend"] = s->backend->name();
  d["fallbacks"] = s->fallbacks + s->backend->fallbacks();
  d["errors"] = errors_.load(std::memory_order_relaxed) + s->backend->errors();
  d["kind"] = kind_;
  d["name"] = name_;
  d["cpp_types"] = cpp_types();
  return d;
}

// Function.lookup as a raw METH_O method: the call a cached hit makes.
PyObject* function_lookup(PyObject* self, PyObject* bound) {
  Function* f = raw_self<Function>(self);
  if (f == nullptr) return nullptr;
  return raw_call([&] { return f->lookup(bound).release().ptr(); });
}

}  // namespace
}  // namespace tcache::py

void bind_function(pybind11::module_& m) {
  using namespace tcache::py;
  using pyb::arg;
  pyb::class_<Lease>(m, "Lease",
                     "A lease on one key from Function.lookup: complete it with "
                     "Function.store(lease, value) or Function.abandon(lease).")
      .def_property_readonly("held", [](const Lease& l) { return l.held; });

  pyb::class_<Function> cls(m, "Function", R"(The C++ core of bcache/fcache/ucache/acache.

Function(kind, name, version="", *, path=None, folder=None, ttl=None,
maxsize=None, remote=None, backend=None, compress=None, lease_timeout=60.0,
arg_specs=None, result_spec=None, allow_pickle=None, logger=None,
capacity_bytes=None): resolved exactly as the C++ decorator of that kind.
compress=None is the kind's C++ default (fcache: LZ4; others: none).)");
  static PyMethodDef lookup_def = {
      "lookup", &function_lookup, METH_O,
      "lookup(bound_args) -> (True, value) on a hit; else (False, lease): compute, then "
      "store(lease, value) or abandon(lease). Waits for another holder's value with the GIL "
      "released."};
  add_raw_method(cls, &lookup_def);
  cls.def(pyb::init([](std::string kind, std::string name, pyb::object version,
                       std::optional<std::filesystem::path> path,
                       std::optional<std::filesystem::path> folder, pyb::object ttl,
                       pyb::object maxsize, pyb::object remote, pyb::object backend,
                       pyb::object compress, double lease_timeout, pyb::object arg_specs,
                       pyb::object result_spec, pyb::object allow_pickle, pyb::object logger,
                       pyb::object capacity_bytes) {
            Function::Args a;
            a.kind = std::move(kind);
            a.name = std::move(name);
            // version is a string as in C++; an int is its decimal string.
            if (!version.is_none()) {
              a.version = PyLong_Check(version.ptr()) ? std::string(pyb::str(version))
                                                      : pyb::cast<std::string>(version);
            }
            a.path = std::move(path);
            a.folder = std::move(folder);
            a.ttl = std::move(ttl);
            a.maxsize = std::move(maxsize);
            a.remote = std::move(remote);
            a.backend = std::move(backend);
            a.compress = std::move(compress);
            a.lease_timeout = lease_timeout;
            a.arg_specs = std::move(arg_specs);
            a.result_spec = std::move(result_spec);
            a.allow_pickle = std::move(allow_pickle);
            a.logger = std::move(logger);
            a.capacity_bytes = std::move(capacity_bytes);
            return std::make_unique<Function>(a);
          }),
          arg("kind"), arg("name"), arg("version") = "", pyb::kw_only(), arg("path") = pyb::none(),
          arg("folder") = pyb::none(), arg("ttl") = pyb::none(), arg("maxsize") = pyb::none(),
          arg("remote") = pyb::none(), arg("backend") = pyb::none(), arg("compress") = pyb::none(),
          arg("lease_timeout") = 60.0, arg("arg_specs") = pyb::none(),
          arg("result_spec") = pyb::none(), arg("allow_pickle") = pyb::none(),
          arg("logger") = pyb::none(), arg("capacity_bytes") = pyb::none())
      .def("lookup_nowait", &Function::lookup_nowait, arg("bound_args"),
           "As lookup, never blocking: (False, None) while another holder computes or the lease "
           "is being taken (on tcache's pool): look again later.")
      .def("store", &Function::store, arg("lease"), arg("value"),
           "Stores the value computed under lease. Raises TypeError for a value the codec cannot "
           "encode (the lease is given up).")
      .def("abandon", &Function::abandon, arg("lease"), "Gives the lease up (the call failed).")
      .def("invalidate", &Function::invalidate, arg("bound_args"))
      .def("clear", &Function::clear, "Removes this function's entries; returns how many.")
      .def("count", &Function::count)
      .def("info", &Function::info)
      .def_property_readonly("backend_name", &Function::backend_name)
      .def_property_readonly("disabled", &Function::disabled)
      .def_property_readonly("name", &Function::name)
      .def_property_readonly("kind", &Function::kind)
      .def_property_readonly("cpp_types", &Function::cpp_types)
      .def_property_readonly("allow_pickle", &Function::allow_pickle);
}
