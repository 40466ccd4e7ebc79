// backend/file_backend.cc: the Backend over a tcache::Store.
//
// Thread safety: a thin forwarder; Store is safe for concurrent use by
// threads and processes, and so is this.

#include <memory>
#include <string>

#include "tcache/backend.h"

namespace tcache {
namespace {

class FileBackend final : public Backend {
 public:
  explicit FileBackend(Store store) : store_(std::move(store)) {}

  std::string name() const override { return "file"; }
  bool get(std::string_view key, std::string& value) override { return store_.get(key, value); }
  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) override {
    store_.put(key, value, ttl);
  }
  bool erase(std::string_view key) override { return store_.erase(key); }
  std::uint64_t erase_prefix(std::string_view prefix) override {
    return store_.erase_prefix(prefix);
  }
  std::uint64_t count_prefix(std::string_view prefix) override {
    return store_.count_prefix(prefix);
  }
  bool get_or_lease(std::string_view key, std::string& value,
                    std::chrono::milliseconds lease_timeout) override {
    return store_.get_or_lease(key, value, lease_timeout);
  }
  void release_lease(std::string_view key) noexcept override { store_.release_lease(key); }
  std::uint64_t max_entries() const override { return 0; }

 private:
  Store store_;
};

}  // namespace

std::shared_ptr<Backend> make_file_backend(const std::filesystem::path& file,
                                           const StoreOptions& options) {
  return std::make_shared<FileBackend>(Store::open(file, options));
}

}  // namespace tcache
