// _tcache.Store (a tcache::Store with Python's mapping manners) and
// _tcache.compact.
//
// The hot calls, Store.get and s[key], are raw CPython (raw_call.h).
// Calls that may wait or walk the file (get_or_lease, verify, repair,
// keys, compact, large puts) release the GIL and hold the tcache::Store by a
// shared_ptr meanwhile, so a close() from another thread cannot free it
// under them.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bindings.h"
#include "convert.h"
#include "errors.h"
#include "raw_call.h"
#include "tcache/compact.h"
#include "tcache/detail/async_state.h"  // detail::atfork_generation()
#include "tcache/store.h"

namespace pyb = pybind11;

namespace tcache::py {
namespace {

// Values at least this large are put with the GIL released (a blob file).
constexpr std::size_t kReleaseGilBytes = 256 * 1024;

// A tcache::Store that reopens itself in a forked child, and can be closed.
class PyStore {
 public:
  PyStore(std::filesystem::path path, StoreOptions options)
      : path_(std::move(path)),
        options_(std::move(options)),
        store_(std::make_shared<Store>(Store::open(path_, options_))),
        generation_(detail::atfork_generation()) {}

  // The store to use now. Throws ValueError once closed; reopens the file in
  // a child of fork() (the parent's Store cannot be used there).
  Store& live() {
    if (generation_ != detail::atfork_generation() || !store_) [[unlikely]]
      reopen();
    return *store_;
  }
  // live(), held for a call that releases the GIL.
  std::shared_ptr<Store> hold() {
    live();
    return store_;
  }
  void close() {
    closed_ = true;
    store_.reset();
  }
  bool closed() const { return closed_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  [[gnu::cold]] void reopen() {
    if (closed_) throw pyb::value_error("tcache: operation on a closed Store");
    // In the child the inherited Store is let go without detaching the
    // parent (store.h, Caveat fork()).
    store_.reset();
    store_ = std::make_shared<Store>(Store::open(path_, options_));
    generation_ = detail::atfork_generation();
  }

  std::filesystem::path path_;
  StoreOptions options_;
  std::shared_ptr<Store> store_;
  std::uint64_t generation_;
  bool closed_ = false;
};

// A key: str (its UTF-8) or bytes. False with TypeError set otherwise.
bool key_of(PyObject* key, std::string_view& out) {
  if (PyUnicode_CheckExact(key) || PyUnicode_Check(key)) {
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(key, &n);
    if (p == nullptr) return false;
    out = std::string_view(p, static_cast<std::size_t>(n));
    return true;
  }
  if (PyBytes_Check(key)) {
    out = std::string_view(PyBytes_AS_STRING(key), static_cast<std::size_t>(PyBytes_GET_SIZE(key)));
    return true;
  }
  PyErr_Format(PyExc_TypeError, "tcache: a Store key is str or bytes, not %.100s",
               Py_TYPE(key)->tp_name);
  return false;
}

std::string_view key_arg(pyb::handle key) {
  std::string_view k;
  if (!key_of(key.ptr(), k)) throw pyb::error_already_set();
  return k;
}

// Bytes of a value: bytes, bytearray, memoryview or any C-contiguous buffer.
// The view lives as long as `keep`.
std::string_view value_arg(pyb::handle value, pyb::buffer_info& keep) {
  if (PyBytes_Check(value.ptr())) {
    return std::string_view(PyBytes_AS_STRING(value.ptr()),
                            static_cast<std::size_t>(PyBytes_GET_SIZE(value.ptr())));
  }
  if (!PyObject_CheckBuffer(value.ptr())) {
    throw pyb::type_error(
        std::string("tcache: a Store value is bytes (or a bytes-like buffer), not ") +
        Py_TYPE(value.ptr())->tp_name);
  }
  keep = pyb::reinterpret_borrow<pyb::buffer>(value).request();
  return std::string_view(static_cast<const char*>(keep.ptr),
                          static_cast<std::size_t>(keep.size * keep.itemsize));
}

PyTypeObject* g_store_type = nullptr;

// The value of key as bytes; on a miss `dflt` (a new reference), or KeyError
// when dflt is null.
PyObject* value_or(PyObject* self, PyObject* key, PyObject* dflt) {
  PyStore* s = raw_self<PyStore>(self);
  if (s == nullptr) return nullptr;
  std::string_view k;
  if (!key_of(key, k)) return nullptr;
  static thread_local std::string value;
  return raw_call([&]() -> PyObject* {
    if (s->live().get(k, value)) {
      return PyBytes_FromStringAndSize(value.data(), static_cast<Py_ssize_t>(value.size()));
    }
    if (dflt == nullptr) {
      PyErr_SetObject(PyExc_KeyError, key);
      return nullptr;
    }
    Py_INCREF(dflt);
    return dflt;
  });
}

// Store.get(key, default=None) (METH_FASTCALL).
PyObject* store_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1 || nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "Store.get(key, default=None) takes 1 or 2 arguments");
    return nullptr;
  }
  return value_or(self, args[0], nargs == 2 ? args[1] : Py_None);
}

// s[key] (mp_subscript): KeyError on a miss.
PyObject* store_subscript(PyObject* self, PyObject* key) { return value_or(self, key, nullptr); }

pyb::object bytes_of(const std::string& v) { return pyb::bytes(v.data(), v.size()); }

pyb::dict stats_dict(const StoreStats& s) {
  pyb::dict d;
  d["entries"] = s.entries;
  d["bytes"] = s.bytes;
  d["blob_bytes"] = s.blob_bytes;
  d["capacity_bytes"] = s.capacity_bytes;
  d["file_bytes"] = s.file_bytes;
  d["index_slots"] = s.index_slots;
  d["page_bytes"] = s.page_bytes;
  d["pages_total"] = s.pages_total;
  d["pages_used"] = s.pages_used;
  d["hits"] = s.hits;
  d["misses"] = s.misses;
  d["puts"] = s.puts;
  d["erases"] = s.erases;
  d["evictions"] = s.evictions;
  d["expirations"] = s.expirations;
  d["checksum_failures"] = s.checksum_failures;
  d["grow_failures"] = s.grow_failures;
  d["recoveries"] = s.recoveries;
  d["attached_processes"] = s.attached_processes;
  return d;
}

pyb::dict verify_dict(const VerifyReport& r) {
  pyb::dict d;
  d["clean"] = r.clean();
  d["entries"] = r.entries;
  d["damaged_entries"] = r.damaged_entries;
  d["duplicate_entries"] = r.duplicate_entries;
  d["broken_free_lists"] = r.broken_free_lists;
  d["leaked_chunks"] = r.leaked_chunks;
  d["uncarved_pages"] = r.uncarved_pages;
  d["dead_processes"] = r.dead_processes;
  d["repaired"] = r.repaired;
  d["reclaimed_chunks"] = r.reclaimed_chunks;
  d["concurrent"] = r.concurrent;
  d["problems"] = r.problems;
  return d;
}

pyb::dict compact_dict(const CompactResult& r) {
  pyb::dict d;
  d["entries"] = r.entries;
  d["recopied"] = r.recopied;
  d["dropped"] = r.dropped;
  d["evicted"] = r.evicted;
  d["file_bytes_before"] = r.file_bytes_before;
  d["file_bytes_after"] = r.file_bytes_after;
  d["capacity_bytes_before"] = r.capacity_bytes_before;
  d["capacity_bytes_after"] = r.capacity_bytes_after;
  d["writers_paused"] = to_seconds(r.writers_paused);
  return d;
}

const char* phase_name(CompactPhase p) {
  switch (p) {
    case CompactPhase::copying:
      return "copying";
    case CompactPhase::switching:
      return "switching";
    case CompactPhase::final_copy:
      return "final_copy";
    case CompactPhase::syncing:
      return "syncing";
  }
  return "unknown";
}

void put_value(PyStore& s, pyb::handle key, pyb::handle value, pyb::handle ttl) {
  const std::string_view k = key_arg(key);
  pyb::buffer_info keep;
  const std::string_view v = value_arg(value, keep);
  const auto ms = to_ms(ttl, "ttl");
  if (v.size() < kReleaseGilBytes) {
    s.live().put(k, v, ms);
    return;
  }
  std::shared_ptr<Store> held = s.hold();
  pyb::gil_scoped_release nogil;
  held->put(k, v, ms);
}

std::vector<std::string> keys_with(PyStore& s, pyb::handle prefix) {
  const std::string_view p = key_arg(prefix);
  std::shared_ptr<Store> held = s.hold();
  std::vector<std::string> keys;
  pyb::gil_scoped_release nogil;
  held->for_each(p, [&keys](const EntryInfo& info, std::string_view) {
    keys.emplace_back(info.key);
    return true;
  });
  return keys;
}

pyb::list keys_list(PyStore& s, pyb::handle prefix) {
  pyb::list out;
  for (const std::string& k : keys_with(s, prefix)) out.append(bytes_of(k));
  return out;
}

}  // namespace
}  // namespace tcache::py

void bind_store(pybind11::module_& m) {
  using namespace tcache;
  using namespace tcache::py;
  using pyb::arg;

  pyb::class_<PyStore> cls(m, "Store", R"(A tcache cache file: bytes keyed by str or bytes.

Any number of threads and processes may use one file at once. A forked
child reopens the file by itself. Store(path, *, capacity_bytes=1<<30,
default_ttl=None, mode=0o600, read_only=False, allow_shared_access=False,
create_if_missing=True, expected_entry_bytes=256, page_bytes=0,
compress_threshold=4096, logger=None): the C++ StoreOptions, seconds as
floats.)");
  g_store_type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  cls.def(pyb::init([](const std::filesystem::path& path, std::int64_t capacity_bytes,
                       pyb::object default_ttl, std::uint32_t mode, bool read_only,
                       bool allow_shared_access, bool create_if_missing,
                       std::int64_t expected_entry_bytes, std::int64_t page_bytes,
                       std::int64_t compress_threshold, pyb::object logger) {
            StoreOptions o;
            o.capacity_bytes = to_count(capacity_bytes, "capacity_bytes");
            o.default_ttl = to_ms(default_ttl, "default_ttl");
            o.mode = mode;
            o.read_only = read_only;
            o.allow_shared_access = allow_shared_access;
            o.create_if_missing = create_if_missing;
            o.expected_entry_bytes =
                static_cast<std::uint32_t>(to_count(expected_entry_bytes, "expected_entry_bytes"));
            o.page_bytes = static_cast<std::uint32_t>(to_count(page_bytes, "page_bytes"));
            o.compress_threshold =
                static_cast<std::uint32_t>(to_count(compress_threshold, "compress_threshold"));
            o.logger = to_logger(std::move(logger));
            return std::make_unique<PyStore>(path, std::move(o));
          }),
          arg("path"), pyb::kw_only(), arg("capacity_bytes") = std::int64_t{1} << 30,
          arg("default_ttl") = pyb::none(), arg("mode") = 0600, arg("read_only") = false,
          arg("allow_shared_access") = false, arg("create_if_missing") = true,
          arg("expected_entry_bytes") = 256, arg("page_bytes") = 0,
          arg("compress_threshold") = 4096, arg("logger") = pyb::none());

  static PyMethodDef get_def = {
      "get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&store_get)), METH_FASTCALL,
      "get(key, default=None) -> bytes | None: the value of key (str or bytes), or default on "
      "a miss (absent, expired, damaged)."};
  add_raw_method(cls, &get_def);

  // s[key] calls the raw slot; the __getitem__ attribute (for explicit
  // calls) answers the same through pybind11.
  cls.def(
         "__getitem__",
         [](pyb::handle self, pyb::handle key) {
           PyObject* v = store_subscript(self.ptr(), key.ptr());
           if (v == nullptr) throw pyb::error_already_set();
           return pyb::reinterpret_steal<pyb::object>(v);
         },
         arg("key"))
      .def(
          "put",
          [](PyStore& s, pyb::handle key, pyb::handle value, pyb::handle ttl) {
            put_value(s, key, value, ttl);
          },
          arg("key"), arg("value"), arg("ttl") = pyb::none(),
          "Stores value (bytes-like) under key; ttl in seconds (None: the store's default_ttl).")
      .def(
          "__setitem__",
          [](PyStore& s, pyb::handle key, pyb::handle value) {
            put_value(s, key, value, pyb::none());
          },
          arg("key"), arg("value"))
      .def(
          "erase", [](PyStore& s, pyb::handle key) { return s.live().erase(key_arg(key)); },
          arg("key"), "Removes key; returns whether it was present.")
      .def(
          "__delitem__",
          [](PyStore& s, pyb::handle key) {
            if (!s.live().erase(key_arg(key))) throw pyb::key_error(pyb::repr(key));
          },
          arg("key"))
      .def(
          "__contains__",
          [](PyStore& s, pyb::handle key) {
            std::string_view k;
            if (!key_of(key.ptr(), k)) {
              PyErr_Clear();
              return false;
            }
            return s.live().contains(k);
          },
          arg("key"))
      .def("__len__", [](PyStore& s) { return s.live().count_prefix({}); })
      .def("keys", &keys_list, arg("prefix") = pyb::bytes(),
           "The keys (bytes) of the live entries starting with prefix, in index order.")
      .def("__iter__", [](PyStore& s) { return pyb::iter(keys_list(s, pyb::bytes())); })
      .def(
          "get_many",
          [](PyStore& s, pyb::iterable keys) {
            std::vector<pyb::object> held;  // keep each key alive while viewed
            std::vector<std::string_view> views;
            for (pyb::handle k : keys) {
              held.push_back(pyb::reinterpret_borrow<pyb::object>(k));
              views.push_back(key_arg(k));
            }
            std::vector<std::string> values(views.size());
            std::unique_ptr<bool[]> found(new bool[views.size()]);
            s.live().get_many(views, values, std::span<bool>(found.get(), views.size()));
            pyb::list out(views.size());
            for (std::size_t i = 0; i < views.size(); ++i) {
              out[i] = found[i] ? bytes_of(values[i]) : pyb::none();
            }
            return out;
          },
          arg("keys"), "[get(k) for k in keys], in one batched lookup.")
      .def(
          "get_or_lease",
          [](PyStore& s, pyb::handle key, pyb::handle timeout) -> pyb::object {
            const std::string_view k = key_arg(key);
            const auto ms = to_ms(timeout, "timeout");
            std::shared_ptr<Store> held = s.hold();
            std::string v;
            bool have = false;
            {
              pyb::gil_scoped_release nogil;
              have = held->get_or_lease(k, v, ms);
            }
            if (have) return bytes_of(v);
            return pyb::none();
          },
          arg("key"), arg("timeout") = 60.0,
          "Single flight: the value if present; None if this process now holds the key's lease "
          "(compute, then put() or release_lease()). Waits for another holder's value with the "
          "GIL released; a dead holder's lease is taken over.")
      .def(
          "release_lease",
          [](PyStore& s, pyb::handle key) { s.live().release_lease(key_arg(key)); }, arg("key"))
      .def("clear", [](PyStore& s) { s.live().clear(); })
      .def(
          "erase_prefix",
          [](PyStore& s, pyb::handle prefix) { return s.live().erase_prefix(key_arg(prefix)); },
          arg("prefix"))
      .def(
          "count_prefix",
          [](PyStore& s, pyb::handle prefix) { return s.live().count_prefix(key_arg(prefix)); },
          arg("prefix"))
      .def("purge_expired", [](PyStore& s) { return s.live().purge_expired(); })
      .def("flush", [](PyStore& s) { s.live().flush(); })
      .def("stats", [](PyStore& s) { return stats_dict(s.live().stats()); })
      .def("verify",
           [](PyStore& s) {
             std::shared_ptr<Store> held = s.hold();
             VerifyReport r;
             {
               pyb::gil_scoped_release nogil;
               r = held->verify();
             }
             return verify_dict(r);
           })
      .def("repair",
           [](PyStore& s) {
             std::shared_ptr<Store> held = s.hold();
             VerifyReport r;
             {
               pyb::gil_scoped_release nogil;
               r = held->repair();
             }
             return verify_dict(r);
           })
      .def("close", &PyStore::close, "Lets the file go; later calls raise ValueError.")
      .def_property_readonly("closed", &PyStore::closed)
      .def("__enter__", [](pyb::object self) { return self; })
      .def("__exit__", [](PyStore& s, pyb::args) { s.close(); })
      .def_property_readonly("path", [](PyStore& s) { return s.path().string(); })
      .def_property_readonly("max_value_bytes",
                             [](PyStore& s) { return s.live().max_value_bytes(); })
      .def("__repr__", [](PyStore& s) {
        return "<tcache.Store '" + s.path().string() + "'" + (s.closed() ? " closed>" : ">");
      });

  // After __getitem__ is defined (which set the slot to a generic lookup of
  // the attribute): s[key] goes straight to the raw function.
  g_store_type->tp_as_mapping->mp_subscript = &store_subscript;
  PyType_Modified(g_store_type);

  m.def(
      "compact",
      [](const std::filesystem::path& path, std::int64_t capacity_bytes, bool allow_shared_access,
         bool sync, std::int64_t threads, pyb::handle drain_timeout, pyb::object progress,
         pyb::object logger) {
        CompactOptions o;
        o.capacity_bytes = to_count(capacity_bytes, "capacity_bytes");
        o.allow_shared_access = allow_shared_access;
        o.sync = sync;
        o.threads = static_cast<unsigned>(to_count(threads, "threads"));
        o.drain_timeout = to_ms(drain_timeout, "drain_timeout");
        o.logger = to_logger(std::move(logger));
        if (HeldCallable f = hold_callable(std::move(progress), "progress")) {
          o.progress = [f](const CompactProgress& p) {
            call_held(f, [&p] {
              return Py_BuildValue("(sKK)", phase_name(p.phase),
                                   static_cast<unsigned long long>(p.done),
                                   static_cast<unsigned long long>(p.total));
            });
          };
        }
        CompactResult r;
        {
          pyb::gil_scoped_release nogil;
          r = compact(path, o);
        }
        return compact_dict(r);
      },
      arg("path"), pyb::kw_only(), arg("capacity_bytes") = 0, arg("allow_shared_access") = false,
      arg("sync") = true, arg("threads") = 0, arg("drain_timeout") = 10.0,
      arg("progress") = pyb::none(), arg("logger") = pyb::none(),
      R"(Rewrites the cache file at path without its dead space, while others use it.
Options are the C++ CompactOptions (seconds as floats); progress, if given, is
called as progress(phase, done, total): phase "copying", "switching",
"final_copy" or "syncing", done/total counts (total 0 when the phase has none). Returns the CompactResult as a dict.)");
}
