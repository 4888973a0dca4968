// The kernel side of oclif-plugin-criu: inspect and pin namespace files, start a program
// inside joined namespaces (optionally in its own session, with io_uring denied), and probe
// whether x86 hardware breakpoints work.
//
// Policy (which namespaces, in which order, what a failure means to the user) lives in
// TypeScript. This file only does what JavaScript cannot: syscalls, fork/exec, fd handling.
// Errors come back as JS errors carrying `syscall`, `errno` and `code` (the errno name).
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/nsfs.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

namespace {

const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case EUSERS: return "EUSERS";
    case ENOEXEC: return "ENOEXEC";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENXIO: return "ENXIO";
    default: return "EUNKNOWN";
  }
}

Napi::Error SysError(Napi::Env env, const char* syscall, int err, const std::string& path = "") {
  std::string msg = std::string(syscall) + ": " + strerror(err);
  if (!path.empty()) msg += " (" + path + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("syscall", Napi::String::New(env, syscall));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// Describe an open fd: {nstype, dev, ino, ownerUid?, ownerIno?}. nstype is the CLONE_NEW*
// bit; 0 when the fd is not a namespace (the kernel answered ENOTTY).
Napi::Object Describe(Napi::Env env, int fd, const std::string& label) {
  struct stat st;
  if (fstat(fd, &st) != 0) throw SysError(env, "fstat", errno, label);
  Napi::Object out = Napi::Object::New(env);
  out.Set("dev", Napi::Number::New(env, static_cast<double>(st.st_dev)));
  out.Set("ino", Napi::Number::New(env, static_cast<double>(st.st_ino)));
  out.Set("mode", Napi::Number::New(env, st.st_mode));
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) {
    if (errno != ENOTTY && errno != EINVAL) throw SysError(env, "ioctl(NS_GET_NSTYPE)", errno, label);
    out.Set("nstype", Napi::Number::New(env, 0));
    return out;
  }
  out.Set("nstype", Napi::Number::New(env, type));
  if (type == CLONE_NEWUSER) {
    uid_t owner;
    if (ioctl(fd, NS_GET_OWNER_UID, &owner) == 0) out.Set("ownerUid", Napi::Number::New(env, owner));
  }
  // The user namespace that owns this one (for a user namespace: its parent). EPERM when it
  // lies outside the caller's; then it is simply not reported.
  int owner_fd = ioctl(fd, NS_GET_USERNS);
  if (owner_fd >= 0) {
    struct stat ost;
    if (fstat(owner_fd, &ost) == 0) out.Set("ownerIno", Napi::Number::New(env, static_cast<double>(ost.st_ino)));
    close(owner_fd);
  }
  return out;
}

// The description of a pinned fd, with the fd in it; the fd is closed if describing fails, so
// that the caller owns it exactly when this returns.
Napi::Object DescribePinned(Napi::Env env, int fd, const std::string& label) {
  try {
    Napi::Object out = Describe(env, fd, label);
    out.Set("fd", Napi::Number::New(env, fd));
    return out;
  } catch (...) {
    close(fd);
    throw;
  }
}

// inspectPath(path) -> description. Opens with O_CLOEXEC and closes before returning.
Napi::Value InspectPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw SysError(env, "open", errno, path);
  try {
    Napi::Object out = Describe(env, fd, path);
    close(fd);
    return out;
  } catch (...) {
    close(fd);
    throw;
  }
}

// inspectFd(fd) -> description.
Napi::Value InspectFd(const Napi::CallbackInfo& info) {
  return Describe(info.Env(), info[0].As<Napi::Number>().Int32Value(), "fd " + info[0].ToString().Utf8Value());
}

// pinPid(pid, procEntry) -> {fd, ...description}. pidfd first, then /proc/<pid>/ns/<entry>,
// then the pidfd must still name a live process: otherwise the PID may have been reused
// between the two and the namespace file may belong to someone else.
Napi::Value PinPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  pid_t pid = info[0].As<Napi::Number>().Int32Value();
  std::string entry = info[1].As<Napi::String>();
  std::string path = "/proc/" + std::to_string(pid) + "/ns/" + entry;
  int pidfd = PidfdOpen(pid);
  if (pidfd < 0) throw SysError(env, "pidfd_open", errno, path);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int open_err = errno;
  int alive = PidfdSendSignal(pidfd, 0) == 0 || errno == EPERM;
  close(pidfd);
  if (fd < 0) throw SysError(env, "open", open_err, path);
  if (!alive) {
    close(fd);
    throw SysError(env, "pidfd_send_signal", ESRCH, path);
  }
  return DescribePinned(env, fd, path);
}

// pinPath(path) -> {fd, ...description}. The caller checks the type.
Napi::Value PinPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw SysError(env, "open", errno, path);
  return DescribePinned(env, fd, path);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0 && close(fd) != 0 && errno != EINTR) throw SysError(info.Env(), "close", errno);
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------
// spawnJoined

// What the child reports through the exec pipe when a step fails before execve succeeds.
enum Step : int {
  kStepStdio = 1,
  kStepSignals = 2,
  kStepSetns = 3,
  kStepSetnsUser = 4,
  kStepSetgroups = 5,
  kStepSetgid = 6,
  kStepSetuid = 7,
  kStepChdir = 8,
  kStepExec = 9,
  kStepSetsid = 10,
  kStepNoNewPrivs = 11,
  kStepSeccomp = 12,
};

const char* StepName(int step) {
  switch (step) {
    case kStepStdio: return "dup2";
    case kStepSignals: return "sigaction";
    case kStepSetns: return "setns";
    case kStepSetnsUser: return "setns";
    case kStepSetgroups: return "setgroups";
    case kStepSetgid: return "setresgid";
    case kStepSetuid: return "setresuid";
    case kStepChdir: return "chdir";
    case kStepExec: return "execve";
    case kStepSetsid: return "setsid";
    case kStepNoNewPrivs: return "prctl(PR_SET_NO_NEW_PRIVS)";
    case kStepSeccomp: return "seccomp";
    default: return "unknown";
  }
}

struct ChildReport {
  int step;
  int err;
  int index;  // which namespace (index into the joins array) for setns steps, else -1
};

constexpr size_t kMaxJoins = 16;

struct JoinFd {
  int fd;
  int flag;
};

// io_uring_setup has the same number on every architecture (the unified table from 403 on);
// old headers may lack the name.
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

// The audit architecture of this build, and of the 32-bit ABI its kernels also run.
#if defined(__x86_64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_X86_64;
constexpr uint32_t kCompatArch = AUDIT_ARCH_I386;
constexpr uint32_t kX32Bit = 0x40000000;  // __X32_SYSCALL_BIT: x32 calls arrive as x86_64 with this bit
#elif defined(__aarch64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_AARCH64;
constexpr uint32_t kCompatArch = AUDIT_ARCH_ARM;
constexpr uint32_t kX32Bit = 0;
#else
#define NO_IO_URING_FILTER 1
#endif

#ifndef NO_IO_URING_FILTER
// A seccomp filter that makes io_uring_setup fail with ENOSYS, as on a kernel without io_uring,
// so that libuv and other users fall back to epoll and threads; every other call is allowed.
// The architecture is checked first: a call's number means something else under another ABI.
const sock_filter kDenyIoUring[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kNativeArch, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kCompatArch, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup | kX32Bit, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
};
#endif

// Runs in the forked child of a multithreaded process: only async-signal-safe calls.
[[noreturn]] void ChildFail(int pipe_fd, int step, int err, int index) {
  ChildReport r{step, err, index};
  ssize_t ignored = write(pipe_fd, &r, sizeof r);
  (void)ignored;
  _exit(127);
}

// What the child does besides joining: a new session, io_uring denied.
struct ChildOptions {
  bool new_session;
  bool deny_io_uring;
};

[[noreturn]] void RunChild(int pipe_fd, const int stdio[3], const std::vector<JoinFd>& joins, bool has_gid,
                           gid_t gid, bool has_uid, uid_t uid, bool has_groups, const std::vector<gid_t>& groups,
                           const char* cwd, ChildOptions options, const std::vector<const char*>& candidates,
                           char* const* argv, char* const* envp) {
  // Signals: default dispositions, nothing blocked (Node ignores SIGPIPE; exec keeps SIG_IGN).
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) ChildFail(pipe_fd, kStepSignals, errno, -1);
  // A forked child never leads a process group, so setsid only fails for a reason worth telling.
  if (options.new_session && setsid() < 0) ChildFail(pipe_fd, kStepSetsid, errno, -1);

  // stdio: first move every source above 2 so that dup2 cannot clobber a later source.
  int moved[3];
  for (int i = 0; i < 3; i++) {
    moved[i] = stdio[i] < 0 ? -1 : fcntl(stdio[i], F_DUPFD_CLOEXEC, 3);
    if (stdio[i] >= 0 && moved[i] < 0) ChildFail(pipe_fd, kStepStdio, errno, i);
  }
  for (int i = 0; i < 3; i++) {
    if (moved[i] >= 0 && dup2(moved[i], i) < 0) ChildFail(pipe_fd, kStepStdio, errno, i);
  }

  // Namespaces: everything but user, then user, then what failed with EPERM before the user
  // join (as nsenter and runc do): root joining a child user namespace whose net namespace
  // belongs to the host must join net first; an unprivileged caller must join user first.
  int user_index = -1;
  for (size_t i = 0; i < joins.size(); i++) {
    if (joins[i].flag == CLONE_NEWUSER) user_index = static_cast<int>(i);
  }
  bool deferred[kMaxJoins] = {false};
  for (size_t i = 0; i < joins.size(); i++) {
    if (static_cast<int>(i) == user_index) continue;
    if (setns(joins[i].fd, joins[i].flag) != 0) {
      if (errno == EPERM && user_index >= 0) {
        deferred[i] = true;
      } else {
        ChildFail(pipe_fd, kStepSetns, errno, static_cast<int>(i));
      }
    }
  }
  if (user_index >= 0 && setns(joins[user_index].fd, CLONE_NEWUSER) != 0)
    ChildFail(pipe_fd, kStepSetnsUser, errno, user_index);
  for (size_t i = 0; i < joins.size(); i++) {
    if (deferred[i] && setns(joins[i].fd, joins[i].flag) != 0)
      ChildFail(pipe_fd, kStepSetns, errno, static_cast<int>(i));
  }

  // Credentials: groups, then gid, then uid (after setresuid we could no longer change gid).
  if (has_groups) {
    if (setgroups(groups.size(), groups.data()) != 0) ChildFail(pipe_fd, kStepSetgroups, errno, -1);
  } else if (has_gid) {
    // Drop the caller's supplementary groups; a user namespace with setgroups "deny" refuses.
    if (setgroups(0, nullptr) != 0 && errno != EPERM) ChildFail(pipe_fd, kStepSetgroups, errno, -1);
  }
  if (has_gid && setresgid(gid, gid, gid) != 0) ChildFail(pipe_fd, kStepSetgid, errno, -1);
  if (has_uid && setresuid(uid, uid, uid) != 0) ChildFail(pipe_fd, kStepSetuid, errno, -1);
  if (cwd != nullptr && chdir(cwd) != 0) ChildFail(pipe_fd, kStepChdir, errno, -1);

  // Last before exec, after the credential switch: the filter is inherited by the whole tree
  // and cannot be removed. no_new_privs is what lets a caller without CAP_SYS_ADMIN install it.
  if (options.deny_io_uring) {
#ifdef NO_IO_URING_FILTER
    ChildFail(pipe_fd, kStepSeccomp, ENOSYS, -1);
#else
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ChildFail(pipe_fd, kStepNoNewPrivs, errno, -1);
    sock_fprog prog{static_cast<unsigned short>(sizeof kDenyIoUring / sizeof kDenyIoUring[0]),
                    const_cast<sock_filter*>(kDenyIoUring)};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) ChildFail(pipe_fd, kStepSeccomp, errno, -1);
#endif
  }

  // PATH search with the candidates prepared before the fork; report the most telling errno.
  int exec_err = ENOENT;
  for (const char* candidate : candidates) {
    execve(candidate, argv, envp);
    if (errno != ENOENT && errno != ENOTDIR) exec_err = errno;
    if (errno == ENOEXEC || errno == ENOMEM || errno == E2BIG) break;
  }
  ChildFail(pipe_fd, kStepExec, exec_err, -1);
}

}  // namespace

namespace {

std::vector<std::string> StringArray(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>());
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// spawnJoined({candidates, argv, env, joins: [{fd, flag}], uid?, gid?, groups?, cwd?, stdio,
//              newSession?, denyIoUring?})
// -> pid. Throws with {step, syscall, errno, code, index} when the child fails before exec.
Napi::Value SpawnJoined(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();

  // Everything the child needs is prepared here, before the fork.
  std::vector<std::string> candidate_strings = StringArray(env, o.Get("candidates"), "candidates");
  std::vector<std::string> argv_strings = StringArray(env, o.Get("argv"), "argv");
  std::vector<std::string> env_strings = StringArray(env, o.Get("env"), "env");
  std::vector<const char*> candidates;
  for (const std::string& c : candidate_strings) candidates.push_back(c.c_str());
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);

  std::vector<JoinFd> joins;
  Napi::Array ja = o.Get("joins").As<Napi::Array>();
  if (ja.Length() > kMaxJoins) throw Napi::RangeError::New(env, "too many namespaces to join");
  for (uint32_t i = 0; i < ja.Length(); i++) {
    Napi::Object j = ja.Get(i).As<Napi::Object>();
    joins.push_back({j.Get("fd").As<Napi::Number>().Int32Value(), j.Get("flag").As<Napi::Number>().Int32Value()});
  }

  bool has_uid = o.Has("uid") && o.Get("uid").IsNumber();
  bool has_gid = o.Has("gid") && o.Get("gid").IsNumber();
  uid_t uid = has_uid ? o.Get("uid").As<Napi::Number>().Uint32Value() : 0;
  gid_t gid = has_gid ? o.Get("gid").As<Napi::Number>().Uint32Value() : 0;
  bool has_groups = o.Has("groups") && o.Get("groups").IsArray();
  std::vector<gid_t> groups;
  if (has_groups) {
    Napi::Array ga = o.Get("groups").As<Napi::Array>();
    for (uint32_t i = 0; i < ga.Length(); i++) groups.push_back(ga.Get(i).As<Napi::Number>().Uint32Value());
  }
  std::string cwd_string;
  bool has_cwd = o.Has("cwd") && o.Get("cwd").IsString();
  if (has_cwd) cwd_string = o.Get("cwd").As<Napi::String>();

  int stdio[3] = {-1, -1, -1};
  if (o.Has("stdio") && o.Get("stdio").IsArray()) {
    Napi::Array sa = o.Get("stdio").As<Napi::Array>();
    for (uint32_t i = 0; i < 3 && i < sa.Length(); i++) stdio[i] = sa.Get(i).As<Napi::Number>().Int32Value();
  }

  ChildOptions options{o.Get("newSession").ToBoolean().Value(), o.Get("denyIoUring").ToBoolean().Value()};

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw SysError(env, "pipe2", errno);

  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    throw SysError(env, "fork", err);
  }
  if (pid == 0) {
    close(pipe_fds[0]);
    RunChild(pipe_fds[1], stdio, joins, has_gid, gid, has_uid, uid, has_groups, groups,
             has_cwd ? cwd_string.c_str() : nullptr, options, candidates, argv.data(), envp.data());
  }

  close(pipe_fds[1]);
  ChildReport report;
  ssize_t n;
  do {
    n = read(pipe_fds[0], &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  close(pipe_fds[0]);
  if (n == 0) return Napi::Number::New(env, pid);  // the pipe closed on exec: started

  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof report)) throw SysError(env, "read", n < 0 ? errno : EIO);
  Napi::Error e = SysError(env, StepName(report.step), report.err);
  e.Set("step", Napi::Number::New(env, report.step));
  e.Set("index", Napi::Number::New(env, report.index));
  throw e;
}

class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, pid_t pid) : Napi::AsyncWorker(env), pid_(pid), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int r;
    do {
      r = waitpid(pid_, &status_, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) err_ = errno;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(SysError(env, "waitpid", err_).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("code", WIFEXITED(status_) ? Napi::Number::New(env, WEXITSTATUS(status_)) : env.Null());
    out.Set("signal", WIFSIGNALED(status_) ? Napi::Number::New(env, WTERMSIG(status_)) : env.Null());
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  pid_t pid_;
  int status_ = 0;
  int err_ = 0;
  Napi::Promise::Deferred deferred_;
};

// waitPid(pid) -> Promise<{code, signal}>, waited for on the thread pool.
Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  auto* worker = new WaitWorker(info.Env(), info[0].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---------------------------------------------------------------------------------------
// startProgram: a program started without forking this process. posix_spawn (glibc: clone
// with CLONE_VM|CLONE_VFORK) copies no page tables, so its cost does not grow with Node's
// memory as fork's does; the child does only what file actions and attributes describe.

// Move fd above `floor`, close-on-exec: a source that is also a target (or 0-2) cannot be
// clobbered by an earlier dup2 in the child, and the copy itself never reaches the program.
int DupAbove(int fd, int floor) { return fcntl(fd, F_DUPFD_CLOEXEC, floor); }

// glibc keeps the real-time signals below SIGRTMIN (32 and 33: thread cancellation and setxid)
// to itself: sigfillset and sigaddset leave them out, and its posix_spawn sets them to SIG_IGN
// in the child unless they are in the set-to-default set, and an ignored signal stays ignored
// across exec. Add them to `set` bit by bit (the kernel's layout: bit sig - 1).
void AddReservedSignals(sigset_t* set) {
  constexpr int kBits = 8 * sizeof(unsigned long);
  auto* words = reinterpret_cast<unsigned long*>(set);
  for (int sig = 32; sig < SIGRTMIN; sig++) words[(sig - 1) / kBits] |= 1UL << ((sig - 1) % kBits);
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) {
    if (fd >= 0) close(fd);
  }
}

// startProgram({candidates, argv, env, fds: number[] (-1: a new pipe), stderrPipe, newSession})
// -> {pid, stderr: fd | -1, pipes: [read end of each -1 entry, in order]}.
// The child gets /dev/null on 0 and 1, a new pipe (or /dev/null) on 2, fds[i] on 3 + i, nothing
// else; default signal dispositions and an empty signal mask; with newSession, setsid().
// Throws {syscall, errno, code, path} when no candidate could be exec'd.
Napi::Value StartProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  std::vector<std::string> candidate_strings = StringArray(env, o.Get("candidates"), "candidates");
  std::vector<std::string> argv_strings = StringArray(env, o.Get("argv"), "argv");
  std::vector<std::string> env_strings = StringArray(env, o.Get("env"), "env");
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);
  std::vector<int> slots;
  Napi::Array fa = o.Get("fds").As<Napi::Array>();
  for (uint32_t i = 0; i < fa.Length(); i++) slots.push_back(fa.Get(i).As<Napi::Number>().Int32Value());
  bool stderr_pipe = o.Get("stderrPipe").ToBoolean().Value();
  bool new_session = o.Get("newSession").ToBoolean().Value();

  // Every fd the child gets, as close-on-exec copies at or above this floor; ours to close.
  const int floor = 3 + static_cast<int>(slots.size());
  std::vector<int> child_side;  // closed here once the child has them (or on failure)
  std::vector<int> read_ends;   // returned (or closed on failure)
  auto fail = [&](const char* syscall, int err, const std::string& path = "") {
    CloseAll(child_side);
    CloseAll(read_ends);
    return SysError(env, syscall, err, path);
  };
  auto keep = [&](int fd) {
    child_side.push_back(fd);
    return fd;
  };
  // A pipe: the read end stays here (close-on-exec), the write end goes to the child.
  auto new_pipe = [&](int& write_end) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return false;
    read_ends.push_back(p[0]);
    keep(p[1]);
    write_end = keep(DupAbove(p[1], floor));
    return write_end >= 0;
  };

  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) throw fail("open", errno, "/dev/null");
  keep(null_fd);
  int null_above = keep(DupAbove(null_fd, floor));
  if (null_above < 0) throw fail("fcntl(F_DUPFD_CLOEXEC)", errno);
  int stderr_fd = null_above;
  int stderr_read = -1;
  if (stderr_pipe) {
    if (!new_pipe(stderr_fd)) throw fail("pipe2", errno);
    stderr_read = read_ends.back();
  }
  std::vector<int> sources;
  for (int fd : slots) {
    int source;
    if (fd == -1) {
      if (!new_pipe(source)) throw fail("pipe2", errno);
    } else {
      source = keep(DupAbove(fd, floor));
      if (source < 0) throw fail("fcntl(F_DUPFD_CLOEXEC)", errno, "fd " + std::to_string(fd));
    }
    sources.push_back(source);
  }

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&actions, null_above, 0);
  posix_spawn_file_actions_adddup2(&actions, null_above, 1);
  posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
  for (size_t i = 0; i < sources.size(); i++)
    posix_spawn_file_actions_adddup2(&actions, sources[i], 3 + static_cast<int>(i));
  // Whatever else is open here without close-on-exec stays here.
  posix_spawn_file_actions_addclosefrom_np(&actions, floor);
  // Every signal back to its default (Node ignores SIGPIPE, and exec keeps SIG_IGN), none blocked.
  sigset_t all;
  sigset_t none;
  sigfillset(&all);
  AddReservedSignals(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attr, flags);

  // PATH search over the candidates prepared by the caller; report the most telling errno.
  pid_t pid = -1;
  int err = ENOENT;
  for (const std::string& candidate : candidate_strings) {
    int r = posix_spawn(&pid, candidate.c_str(), &actions, &attr, argv.data(), envp.data());
    if (r == 0) {
      err = 0;
      break;
    }
    if (r != ENOENT && r != ENOTDIR) err = r;
    if (r == ENOEXEC || r == ENOMEM || r == E2BIG || r == EAGAIN) break;
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    throw fail("execve", err, candidate_strings.size() == 1 ? candidate_strings[0] : argv_strings.empty() ? "" : argv_strings[0]);
  }

  CloseAll(child_side);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, pid));
  out.Set("stderr", Napi::Number::New(env, stderr_read));
  Napi::Array pipes = Napi::Array::New(env);
  uint32_t n = 0;
  for (int fd : read_ends) {
    if (fd != stderr_read) pipes.Set(n++, Napi::Number::New(env, fd));
  }
  out.Set("pipes", pipes);
  return out;
}

// ExitWatch(pid, onExit): learns of a child's exit on the event loop (a pidfd polled by libuv,
// so no thread waits), reaps it and calls onExit({code, signal}) once. kill(signal) goes
// through the pidfd, so a PID reused after the reap is never signalled; unref() lets this
// process exit while the child runs on (a released daemon).
class ExitWatch : public Napi::ObjectWrap<ExitWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ExitWatch",
                       {InstanceMethod("kill", &ExitWatch::Kill), InstanceMethod("unref", &ExitWatch::UnrefLoop)});
  }

  explicit ExitWatch(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<ExitWatch>(info), context_(info.Env(), "criu:exit-watch") {
    Napi::Env env = info.Env();
    pid_ = info[0].As<Napi::Number>().Int32Value();
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    pidfd_ = PidfdOpen(pid_);
    if (pidfd_ < 0) throw SysError(env, "pidfd_open", errno, "pid " + std::to_string(pid_));
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      close(pidfd_);
      throw Napi::Error::New(env, "no event loop");
    }
    poll_ = new uv_poll_t;
    poll_->data = this;
    int r = uv_poll_init(loop, poll_, pidfd_);
    if (r == 0) r = uv_poll_start(poll_, UV_READABLE, OnReadable);
    if (r != 0) {
      delete poll_;
      poll_ = nullptr;
      close(pidfd_);
      throw SysError(env, "uv_poll_start", -r);
    }
    Ref();  // alive while it watches, also when JS holds no reference
    napi_add_env_cleanup_hook(env, Teardown, this);
  }

 private:
  static void OnReadable(uv_poll_t* handle, int /*status*/, int /*events*/) {
    auto* self = static_cast<ExitWatch*>(handle->data);
    int status = 0;
    pid_t r;
    do {
      r = waitpid(self->pid_, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return;  // not yet (a spurious wake)
    self->Stop();
    napi_env env = self->Env();
    napi_remove_env_cleanup_hook(env, Teardown, self);
    // No C++ exception may leave a libuv callback (it would terminate the process): a JS error
    // from the callback becomes an uncaught exception, and an env that can no longer run JS
    // (shutting down: libuv's handles are run once more while Node frees the environment)
    // simply does not hear of the exit. The handle scope is opened outside the try, so the
    // catch can still read the error's value.
    napi_handle_scope scope = nullptr;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      try {
        Napi::Object out = Napi::Object::New(env);
        bool exited = r > 0 && WIFEXITED(status);
        bool signalled = r > 0 && WIFSIGNALED(status);
        out.Set("code", exited ? Napi::Number::New(env, WEXITSTATUS(status)) : Napi::Env(env).Null());
        out.Set("signal", signalled ? Napi::Number::New(env, WTERMSIG(status)) : Napi::Env(env).Null());
        // MakeCallback: promise reactions queued by the callback run when it returns.
        self->callback_.MakeCallback(Napi::Env(env).Global(), {out}, self->context_);
      } catch (const Napi::Error& e) {
        // A termination (the env stopping) comes as an error without a value or message.
        try {
          napi_value error = e.Value();
          if (error != nullptr && !e.Message().empty()) napi_fatal_exception(env, error);
        } catch (...) {
        }
      } catch (...) {
      }
      napi_close_handle_scope(env, scope);
    }
    try {
      self->callback_.Reset();
      self->Unref();
    } catch (...) {
    }
  }

  static void Teardown(void* self) { static_cast<ExitWatch*>(self)->Stop(); }

  // Stop watching and close the pidfd (after the reap, or at teardown).
  void Stop() {
    if (poll_ != nullptr) {
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (pidfd_ >= 0) {
      close(pidfd_);
      pidfd_ = -1;
    }
  }

  // kill(signal) -> whether it was sent: false once the child has been reaped.
  Napi::Value Kill(const Napi::CallbackInfo& info) {
    int sig = info[0].As<Napi::Number>().Int32Value();
    if (pidfd_ < 0) return Napi::Boolean::New(info.Env(), false);
    if (PidfdSendSignal(pidfd_, sig) != 0) {
      if (errno == ESRCH) return Napi::Boolean::New(info.Env(), false);  // exited, not reaped yet
      throw SysError(info.Env(), "pidfd_send_signal", errno);
    }
    return Napi::Boolean::New(info.Env(), true);
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  pid_t pid_ = -1;
  int pidfd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference callback_;
  Napi::AsyncContext context_;
};

// ---------------------------------------------------------------------------------------
// CRIU's RPC socket (criu swrk): a SOCK_SEQPACKET pair, one protobuf message per send and
// receive, as CRIU's own service expects (libuv has no seqpacket sockets, hence native).

// seqpacketPair() -> [fd, fd], both close-on-exec (a child gets one through its stdio only).
Napi::Value SeqpacketPair(const Napi::CallbackInfo& info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) throw SysError(info.Env(), "socketpair", errno);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, Napi::Number::New(info.Env(), sv[0]));
  out.Set(1u, Napi::Number::New(info.Env(), sv[1]));
  return out;
}

// sendMessage(fd, buffer): one message, whole or not at all.
Napi::Value SendMessage(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> data = info[1].As<Napi::Buffer<uint8_t>>();
  ssize_t n;
  do {
    n = send(fd, data.Data(), data.Length(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw SysError(info.Env(), "send", errno);
  if (static_cast<size_t>(n) != data.Length()) throw SysError(info.Env(), "send", EMSGSIZE);
  return info.Env().Undefined();
}

// shutdownSocket(fd): both directions; a receive waiting on the thread pool returns at once.
Napi::Value ShutdownSocket(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (shutdown(fd, SHUT_RDWR) != 0 && errno != ENOTCONN) throw SysError(info.Env(), "shutdown", errno);
  return info.Env().Undefined();
}

class RecvWorker : public Napi::AsyncWorker {
 public:
  RecvWorker(Napi::Env env, int fd) : Napi::AsyncWorker(env), fd_(fd), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // The next message's length first (MSG_TRUNC reports it whole), then the message.
    ssize_t len;
    do {
      len = recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC);
    } while (len < 0 && errno == EINTR);
    if (len <= 0) {
      if (len < 0) err_ = errno;
      return;  // 0: the peer is gone
    }
    data_.resize(static_cast<size_t>(len));
    ssize_t n;
    do {
      n = recv(fd_, data_.data(), data_.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) err_ = errno;
    else data_.resize(static_cast<size_t>(n));
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(SysError(env, "recv", err_).Value());
      return;
    }
    if (data_.empty()) {
      deferred_.Resolve(env.Null());
      return;
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()));
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_;
  int err_ = 0;
  std::vector<uint8_t> data_;
  Napi::Promise::Deferred deferred_;
};

// receiveMessage(fd) -> Promise<Buffer | null>: the next message, or null once the peer has
// closed its end; waited for on the thread pool.
Napi::Value ReceiveMessage(const Napi::CallbackInfo& info) {
  auto* worker = new RecvWorker(info.Env(), info[0].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---------------------------------------------------------------------------------------
// Hardware breakpoint probe

#if defined(__x86_64__)
__attribute__((noinline)) void ProbeTarget() { asm volatile("" ::: "memory"); }

double NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
#endif

// probeHwBreakpoints(boundMs) -> {works: boolean|null, detail}. A traced child stops itself;
// we set an execute breakpoint on ProbeTarget in DR0/DR7 and let it run into it. A VM that
// does not emulate debug registers lets the child run through and exit.
Napi::Value ProbeHwBreakpoints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
#if !defined(__x86_64__)
  out.Set("works", env.Null());
  out.Set("detail", "the probe exists for x86-64 only");
  return out;
#else
  double bound_ms = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 50;
  void (*volatile target)() = ProbeTarget;
  pid_t pid = fork();
  if (pid < 0) throw SysError(env, "fork", errno);
  if (pid == 0) {
    if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) _exit(2);
    kill(getpid(), SIGSTOP);
    target();
    _exit(0);
  }
  auto finish = [&](const char* detail, Napi::Value works) {
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    out.Set("works", works);
    out.Set("detail", detail);
    return out;
  };
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status)) return finish("the traced child did not stop", env.Null());
  uintptr_t addr = reinterpret_cast<uintptr_t>(target);
  if (ptrace(PTRACE_POKEUSER, pid, offsetof(struct user, u_debugreg[0]), addr) != 0)
    return finish("the kernel refused to set DR0", Napi::Boolean::New(env, false));
  // DR7: L0 enabled, R/W0 = 00 (instruction execution), LEN0 = 00.
  if (ptrace(PTRACE_POKEUSER, pid, offsetof(struct user, u_debugreg[7]), 0x1UL) != 0)
    return finish("the kernel refused to set DR7", Napi::Boolean::New(env, false));
  if (ptrace(PTRACE_CONT, pid, nullptr, nullptr) != 0) return finish("PTRACE_CONT failed", env.Null());
  double deadline = NowMs() + bound_ms;
  for (;;) {
    int r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFSTOPPED(status) && WSTOPSIG(status) == SIGTRAP)
        return finish("the breakpoint trapped", Napi::Boolean::New(env, true));
      if (WIFEXITED(status)) {
        out.Set("works", Napi::Boolean::New(env, false));
        out.Set("detail", "the child ran through the breakpoint without a trap");
        return out;
      }
      return finish("the child stopped for another reason", env.Null());
    }
    if (NowMs() > deadline) return finish("no answer within the bound", Napi::Boolean::New(env, false));
    struct timespec ts = {0, 200000};
    nanosleep(&ts, nullptr);
  }
#endif
}

// setChildSubreaper(on): orphans of our descendants (a killed CRIU's half-restored tasks)
// are reparented to this process instead of PID 1, so they can be found and ended.
Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  int on = info[0].ToBoolean().Value() ? 1 : 0;
  if (prctl(PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) != 0) throw SysError(info.Env(), "prctl(PR_SET_CHILD_SUBREAPER)", errno);
  return info.Env().Undefined();
}

// getChildSubreaper() -> whether this process is a child subreaper now.
Napi::Value GetChildSubreaper(const Napi::CallbackInfo& info) {
  int on = 0;
  if (prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0) != 0) throw SysError(info.Env(), "prctl(PR_GET_CHILD_SUBREAPER)", errno);
  return Napi::Boolean::New(info.Env(), on != 0);
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("supported", Napi::Boolean::New(env, true));
  exports.Set("inspectPath", Napi::Function::New(env, InspectPath));
  exports.Set("inspectFd", Napi::Function::New(env, InspectFd));
  exports.Set("pinPid", Napi::Function::New(env, PinPid));
  exports.Set("pinPath", Napi::Function::New(env, PinPath));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("spawnJoined", Napi::Function::New(env, SpawnJoined));
  exports.Set("waitPid", Napi::Function::New(env, WaitPid));
  exports.Set("startProgram", Napi::Function::New(env, StartProgram));
  exports.Set("ExitWatch", ExitWatch::Define(env));
  exports.Set("seqpacketPair", Napi::Function::New(env, SeqpacketPair));
  exports.Set("sendMessage", Napi::Function::New(env, SendMessage));
  exports.Set("receiveMessage", Napi::Function::New(env, ReceiveMessage));
  exports.Set("shutdownSocket", Napi::Function::New(env, ShutdownSocket));
  exports.Set("probeHwBreakpoints", Napi::Function::New(env, ProbeHwBreakpoints));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("getChildSubreaper", Napi::Function::New(env, GetChildSubreaper));
  return exports;
}

NODE_API_MODULE(criu_ns, Init)
