// tests/support/file_surgery.h: reading and damaging a closed cache file
// byte by byte, for the tests that check how tcache copes with damage
// (corruption_test, tool_test's verify cases). Knows the layout from
// lib/format/layout.h on purpose.
//
// Thread safety: plain file I/O; use on files no process has open.

#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>

#include <gtest/gtest.h>

#include "format/layout.h"

namespace tcache::test {

class FileSurgery {
 public:
  explicit FileSurgery(std::filesystem::path file) : file_(std::move(file)) {}

  detail::Superblock superblock() const { return read_at<detail::Superblock>(0); }

  template <class T>
  T read_at(std::uint64_t off) const {
    T v{};
    const int fd = ::open(file_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, &v, sizeof v, static_cast<off_t>(off)), static_cast<ssize_t>(sizeof v));
    ::close(fd);
    return v;
  }

  void write_at(std::uint64_t off, const void* data, std::size_t n) const {
    const int fd = ::open(file_.c_str(), O_WRONLY);
    ASSERT_EQ(::pwrite(fd, data, n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    ::close(fd);
  }

 private:
  std::filesystem::path file_;
};

}  // namespace tcache::test
