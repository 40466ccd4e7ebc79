// tests/support/redis_server.h: a real redis-server of a test's own, and a
// raw hiredis connection to look at what tcache left in it. Header-only;
// used by tests/redis_test.cc and bench/redis_bench.cc. Nothing here uses
// GoogleTest: failures throw std::runtime_error with a message that says
// what to do.
//
//   find_redis_server   the redis-server executable ("" if not installed)
//   RedisServer         starts `redis-server` on a free loopback port (no
//                       persistence: --save '' --appendonly no), waits until
//                       it answers PING, and stops it by its pid (kill +
//                       waitpid); can kill -9, restart on the same port,
//                       SIGSTOP and SIGCONT it
//   RawRedis            one blocking hiredis connection: command(args...)
//   TcpProxy            a TCP proxy on a free loopback port, in front of a
//                       server, run by a thread of its own; it forwards both
//                       ways, or misbehaves as a slow or lossy server does:
//                       trickles a never-ending reply one byte at a time, or
//                       swallows the replies on a connection once a command
//                       with a given marker went through it
//
// Thread safety: none, except TcpProxy's members, which any thread may call;
// a test drives these from its main thread. The server dies with the test
// process (PR_SET_PDEATHSIG) if the test crashes.

#ifndef TCACHE_TESTS_SUPPORT_REDIS_SERVER_H_
#define TCACHE_TESTS_SUPPORT_REDIS_SERVER_H_

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace tcache::test {

// The redis-server executable: $PATH, then /usr/bin and /usr/sbin. "" if
// there is none.
inline std::string find_redis_server() {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string_view p(path);
    while (!p.empty()) {
      const std::size_t colon = p.find(':');
      dirs.emplace_back(p.substr(0, colon));
      p = colon == std::string_view::npos ? std::string_view() : p.substr(colon + 1);
    }
  }
  dirs.emplace_back("/usr/bin");
  dirs.emplace_back("/usr/sbin");
  for (const auto& d : dirs) {
    const std::string candidate = d + "/redis-server";
    if (!d.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

inline constexpr const char* kNoRedisServer =
    "redis-server is not installed: the Redis tests start a real server of their own. Run "
    "./setup.sh (it installs Debian's redis-server and libhiredis-dev), or `apt-get install "
    "redis-server libhiredis-dev`";

struct RedisReplyFree {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using RawReply = std::unique_ptr<redisReply, RedisReplyFree>;

// One blocking connection (TCP to 127.0.0.1, or a unix socket).
class RawRedis {
 public:
  explicit RawRedis(int port, const std::string& password = "", const std::string& socket = "") {
    const timeval tv{2, 0};
    ctx_ = socket.empty() ? redisConnectWithTimeout("127.0.0.1", port, tv)
                          : redisConnectUnixWithTimeout(socket.c_str(), tv);
    if (ctx_ == nullptr || ctx_->err != 0) {
      const std::string why = ctx_ != nullptr ? ctx_->errstr : "out of memory";
      if (ctx_ != nullptr) redisFree(ctx_);
      ctx_ = nullptr;
      throw std::runtime_error("RawRedis: cannot connect to port " + std::to_string(port) + ": " +
                               why);
    }
    redisSetTimeout(ctx_, tv);
    if (!password.empty()) command({"AUTH", password});
  }
  ~RawRedis() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  RawRedis(const RawRedis&) = delete;
  RawRedis& operator=(const RawRedis&) = delete;

  // Runs one command; throws on an I/O error (not on an error reply).
  RawReply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (r == nullptr) {
      throw std::runtime_error("RawRedis: " + args[0] + " failed: " +
                               (ctx_->err != 0 ? std::string(ctx_->errstr) : "no reply"));
    }
    return RawReply(r);
  }
  long long integer(const std::vector<std::string>& args) {
    const RawReply r = command(args);
    if (r->type != REDIS_REPLY_INTEGER)
      throw std::runtime_error("RawRedis: " + args[0] + ": not an integer");
    return r->integer;
  }
  std::optional<std::string> string(const std::vector<std::string>& args) {
    const RawReply r = command(args);
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) return std::nullopt;
    return std::string(r->str, r->len);
  }
  // Every key matching `pattern` (SCAN; sorted).
  std::vector<std::string> keys(const std::string& pattern) {
    std::vector<std::string> out;
    std::string cursor = "0";
    do {
      const RawReply r = command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
      cursor.assign(r->element[0]->str, r->element[0]->len);
      for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
        out.emplace_back(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
      }
    } while (cursor != "0");
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }
  redisContext* context() const noexcept { return ctx_; }

 private:
  redisContext* ctx_ = nullptr;
};

// A free loopback port (bound once, then closed).
inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(std::string("cannot find a free loopback port: ") +
                             std::strerror(errno));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

class TcpProxy {
 public:
  enum class Mode {
    forward,  // both ways, as the bytes come
    // From now on, what a client sends is dropped, and the client gets a
    // reply that never ends: "$1000000000\r\n" and then one byte every
    // 10 ms, until it hangs up. Every read it makes gets a byte soon.
    trickle,
    // A connection that passes a command containing the marker gets no
    // reply again (the server still runs the command).
    swallow,
  };

  explicit TcpProxy(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 64) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      const int err = errno;
      if (listener_ >= 0) ::close(listener_);
      throw std::runtime_error(std::string("TcpProxy: cannot listen: ") + std::strerror(err));
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~TcpProxy() { stop(); }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const noexcept { return port_; }
  std::string uri(int db = 0, const std::string& query = "") const {
    std::string u = "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
    if (!query.empty()) u += "?" + query;
    return u;
  }
  void set_mode(Mode m, std::string marker = {}) {
    {
      std::lock_guard lock(mutex_);
      marker_ = std::move(marker);
    }
    mode_.store(m);
  }
  // Closes every connection and the listener and joins the thread: whatever
  // a client waits for from the proxy ends (EOF).
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Conn {
    int client = -1;
    int server = -1;
    bool trickling = false;
    bool swallowing = false;
    bool header_sent = false;
    std::chrono::steady_clock::time_point next_byte{};
  };

  static bool send_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  static void close_conn(Conn& c) {
    if (c.client >= 0) ::close(c.client);
    if (c.server >= 0) ::close(c.server);
    c.client = c.server = -1;
  }

  void accept_one(std::vector<Conn>& conns) {
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(target_port_));
    if (up < 0 || ::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (up >= 0) ::close(up);
      ::close(fd);
      return;
    }
    conns.push_back(Conn{fd, up});
  }

  // One chunk from the client; false if the connection is over.
  bool from_client(Conn& c) {
    char buf[16384];
    const ssize_t n = ::read(c.client, buf, sizeof buf);
    if (n <= 0) return false;
    const Mode m = mode_.load();
    if (m == Mode::trickle) c.trickling = true;
    if (c.trickling) return true;  // dropped
    if (m == Mode::swallow) {
      std::lock_guard lock(mutex_);
      if (!marker_.empty() && std::string_view(buf, static_cast<std::size_t>(n)).find(marker_) !=
                                  std::string_view::npos) {
        c.swallowing = true;
      }
    }
    return send_all(c.server, buf, static_cast<std::size_t>(n));
  }

  bool from_server(Conn& c) {
    char buf[16384];
    const ssize_t n = ::read(c.server, buf, sizeof buf);
    if (n <= 0) return false;
    if (c.trickling || c.swallowing) return true;  // dropped
    return send_all(c.client, buf, static_cast<std::size_t>(n));
  }

  bool trickle(Conn& c) {
    const auto now = std::chrono::steady_clock::now();
    if (!c.trickling || now < c.next_byte) return true;
    c.next_byte = now + std::chrono::milliseconds(10);
    if (!c.header_sent) {
      c.header_sent = true;
      const std::string_view head = "$1000000000\r\n";
      return send_all(c.client, head.data(), head.size());
    }
    return send_all(c.client, "x", 1);
  }

  void loop() {
    std::vector<Conn> conns;
    std::vector<pollfd> fds;
    while (!stop_.load()) {
      fds.assign(1, pollfd{listener_, POLLIN, 0});
      for (const Conn& c : conns) {
        fds.push_back(pollfd{c.client, POLLIN, 0});
        fds.push_back(pollfd{c.server, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 5) < 0 && errno != EINTR) break;
      for (std::size_t i = 0; i < conns.size(); ++i) {
        Conn& c = conns[i];
        bool ok = true;
        if ((fds[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) ok = from_client(c);
        if (ok && (fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
          ok = from_server(c);
        }
        if (ok) ok = trickle(c);
        if (!ok) close_conn(c);
      }
      std::erase_if(conns, [](const Conn& c) { return c.client < 0; });
      if ((fds[0].revents & POLLIN) != 0) accept_one(conns);
    }
    for (Conn& c : conns) close_conn(c);
    ::close(listener_);
  }

  const int target_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<Mode> mode_{Mode::forward};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::string marker_;
  std::thread thread_;
};

class RedisServer {
 public:
  struct Options {
    std::string password;      // --requirepass
    bool unix_socket = false;  // also listen on <dir>/redis.sock
  };

  // Starts a server whose files (log, socket) go to `dir`. Throws
  // std::runtime_error if redis-server is missing or does not come up.
  RedisServer(std::filesystem::path dir, Options options)
      : dir_(std::move(dir)), options_(std::move(options)) {
    exe_ = find_redis_server();
    if (exe_.empty()) throw std::runtime_error(kNoRedisServer);
    start();
  }
  explicit RedisServer(std::filesystem::path dir) : RedisServer(std::move(dir), Options{}) {}
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const noexcept { return port_; }
  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }
  std::string socket_path() const { return (dir_ / "redis.sock").string(); }
  // "redis://[:password@]127.0.0.1:<port>/<db>[?query]"
  std::string uri(int db = 0, const std::string& query = "") const {
    std::string u = "redis://";
    if (!options_.password.empty()) u += ":" + options_.password + "@";
    u += "127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
    if (!query.empty()) u += "?" + query;
    return u;
  }
  std::string log() const {
    std::ifstream in(log_path());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  RawRedis raw() const { return RawRedis(port_, options_.password); }

  // Starts the server: on a new free port the first time, on the same port
  // after stop() or kill() (a restart).
  void start() {
    if (running()) return;
    const bool same_port = port_ != 0;
    for (int attempt = 0; attempt < 8; ++attempt) {
      if (!same_port) port_ = free_port();
      if (launch() && wait_ready()) return;
      if (same_port && attempt < 7) {  // the old one's port may take a moment to free
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    throw std::runtime_error("redis-server did not come up on port " + std::to_string(port_) +
                             "; its log:\n" + log());
  }
  // SIGTERM (after SIGCONT, in case it is stopped) and waitpid.
  void stop() { end(SIGTERM); }
  // SIGKILL and waitpid: a crash.
  void kill() { end(SIGKILL); }
  // SIGSTOP: the server stalls (connections stay open, nothing answers).
  void pause() const { ::kill(pid_, SIGSTOP); }
  void resume() const { ::kill(pid_, SIGCONT); }

 private:
  static int free_port() { return free_loopback_port(); }

  std::filesystem::path log_path() const {
    return dir_ / ("redis-" + std::to_string(port_) + ".log");
  }

  bool launch() {
    std::vector<std::string> args = {exe_,     "--port",           std::to_string(port_),
                                     "--bind", "127.0.0.1",        "--save",
                                     "",       "--appendonly",     "no",
                                     "--dir",  dir_.string(),      "--daemonize",
                                     "no",     "--protected-mode", "no"};
    if (!options_.password.empty()) {
      args.insert(args.end(), {"--requirepass", options_.password});
    }
    if (options_.unix_socket) {
      args.insert(args.end(), {"--unixsocket", socket_path(), "--unixsocketperm", "700"});
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) throw std::runtime_error("cannot open " + log_path().string());
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      if (::getppid() != parent) ::_exit(127);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    pid_ = pid;
    return true;
  }

  // Polls until the server answers PING (or exits, or 30 s pass).
  bool wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // it exited (port taken?)
        pid_ = 0;
        return false;
      }
      try {
        RawRedis r(port_, options_.password);
        if (r.string({"PING"}) == "PONG") return true;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    end(SIGKILL);
    return false;
  }

  void end(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, sig);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = 0;
  }

  std::filesystem::path dir_;
  Options options_;
  std::string exe_;
  int port_ = 0;
  pid_t pid_ = 0;
};

}  // namespace tcache::test

#endif  // TCACHE_TESTS_SUPPORT_REDIS_SERVER_H_
