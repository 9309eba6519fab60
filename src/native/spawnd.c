/*
 * git-fcgi-spawnd: starts backends (git http-backend) for git-fcgi.
 *
 * Why: Node.js starts a child with fork(), which copies the page tables of the whole daemon and
 * makes it take copy-on-write faults afterwards. At the daemon's size that is 1-2 ms of CPU per
 * request on the event loop, more than everything else git-fcgi does for a ref advertisement.
 * This helper is a few hundred kilobytes: its fork() costs tens of microseconds, and it runs
 * beside the event loop instead of blocking it.
 *
 * Usage: git-fcgi-spawnd SOCKET DAEMON_PID
 *   SOCKET      "@name" for an abstract UNIX socket, else a path. Every connection must come
 *               from DAEMON_PID (SO_PEERCRED); anything else is closed unread.
 * Prints "ready\n" on stdout once it listens. Ends when the daemon is gone: its control
 * connection closes, or SIGTERM comes (PR_SET_PDEATHSIG sends one when the daemon dies). Then
 * every backend's process group gets SIGTERM, and SIGKILL ORPHAN_GRACE_MS later: no backend
 * outlives the daemon, however the daemon ended.
 *
 * Protocol. Each connection starts with a 5-byte hello: u32 id (little-endian), u8 role.
 *   role 'C': the control connection (id 0), one per helper, both ways:
 *     daemon -> helper: u32 length, then one message:
 *                       'S' u32 id u16 argc, and NUL-terminated strings: program, cwd, argc
 *                           arguments (after argv[0], which is the program), and environment
 *                           entries ("NAME=value") up to the end of the message. At most
 *                           MAX_MESSAGE bytes (execve takes at most 2 MiB under the usual
 *                           8 MiB stack limit, 6 MiB under any).
 *                       'R' u32 id: release. The daemon sends no more signals to the spawn's
 *                           process group: the helper may reap its leader.
 *     helper -> daemon: 13 bytes: 'P' u32 id, i32 pid, i32 0        started
 *                                 'F' u32 id, i32 errno, i32 stage  not started (0 fork, 1 chdir,
 *                                                                   2 exec, 3 message, 4 streams:
 *                                                                   ECANCELED, the daemon closed one)
 *                                 'X' u32 id, i32 code, i32 signal  exited (code -1 when signalled);
 *                                                                   its leader is reaped at 'R'
 *   role 0, 1, 2: the backend's stdin, stdout, stderr for spawn `id`.
 * The backend starts once its message and its three connections have arrived. It runs in a new
 * session (setsid), so the daemon can signal its whole process group; signal dispositions and
 * the signal mask are reset, and it inherits nothing else from the helper: descriptors 0, 1
 * and 2 are its only ones.
 *
 * A message the helper cannot use fails its own spawn ('F', stage "message": E2BIG when too
 * large, EINVAL when malformed), or is logged and skipped when it names no spawn: one bad
 * message never ends the helper, and with it every backend in flight.
 *
 * Why 'R': a process group id is the pid of its leader, and cannot be reused while the leader
 * (even as a zombie) or any member exists. 'X' is reported with waitid(WNOWAIT), and the leader
 * stays an unreaped zombie until 'R': until then `kill(-pid)` can only reach this backend's
 * group, never an unrelated one that got the pid after the reap. The daemon sends 'R' once it
 * has the exit and its kill sequence (SIGTERM, SIGKILL after kill_grace) is over.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_MESSAGE (4u << 20)
#define HELLO_LEN 5
#define MAX_PENDING_HELLO 1024
/* Out of descriptors: how long the listening socket is left alone before accept4 is tried again. */
#define ACCEPT_PAUSE_MS 100
/* The daemon gone: how long backends get between SIGTERM and SIGKILL (kill_grace's default). */
#define ORPHAN_GRACE_MS 2000

enum { STAGE_FORK, STAGE_CHDIR, STAGE_EXEC, STAGE_MESSAGE, STAGE_STREAMS };

struct spawn {
  uint32_t id;
  int fds[3];
  char *message; /* the strings after 'S', id and argc; NULL until the message arrived */
  size_t message_len;
  unsigned argc;
  pid_t pid;     /* > 0 once running */
  int cancelled; /* given up by the daemon before its message arrived: drop the message */
  int exited;    /* its exit has been reported: the leader is a zombie until released */
  int released;  /* the daemon sends its group no more signals: reap the leader at exit */
  struct spawn *next;
};

static struct spawn *spawns;
static int control_fd = -1;
static int signal_pipe[2];
static pid_t daemon_pid;
static volatile sig_atomic_t terminated;

static void end_all(int status);

static void die(const char *what) {
  fprintf(stderr, "git-fcgi-spawnd: %s: %s\n", what, strerror(errno));
  end_all(1);
}

static void on_signal(int sig) {
  int saved = errno;
  if (sig == SIGTERM) terminated = 1;
  (void)!write(signal_pipe[1], "s", 1);
  errno = saved;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Descriptors the helper inherited beyond 0-2 (whatever the daemon itself inherited without
 * close-on-exec, e.g. from a launching shell's `exec 251<file`) are closed before anything
 * else. Every descriptor the helper opens itself is close-on-exec, so a backend then starts
 * with its three streams and nothing more.
 */
static void close_inherited(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
  /* Kernels before 5.9: what /proc lists; without /proc, every number below RLIMIT_NOFILE
   * (65536 at most). */
  DIR *dir = opendir("/proc/self/fd");
  if (dir != NULL) {
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
      int fd = atoi(entry->d_name);
      if (fd > 2 && fd != dirfd(dir)) close(fd);
    }
    closedir(dir);
    return;
  }
  struct rlimit limit;
  int most = 65536;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < (rlim_t)most) most = (int)limit.rlim_cur;
  for (int fd = 3; fd < most; fd++) close(fd);
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = (v >> 24) & 0xff;
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The control connection is blocking for writes: the daemon always reads it. */
static void report(char kind, uint32_t id, int32_t a, int32_t b) {
  unsigned char out[13];
  out[0] = (unsigned char)kind;
  put_u32(out + 1, id);
  put_u32(out + 5, (uint32_t)a);
  put_u32(out + 9, (uint32_t)b);
  size_t done = 0;
  while (done < sizeof out) {
    ssize_t n = write(control_fd, out + done, sizeof out - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) end_all(0); /* the daemon is gone */
    done += (size_t)n;
  }
}

static struct spawn *find(uint32_t id) {
  for (struct spawn *s = spawns; s != NULL; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

static struct spawn *find_or_add(uint32_t id) {
  struct spawn *s = find(id);
  if (s != NULL) return s;
  s = calloc(1, sizeof *s);
  if (s == NULL) die("calloc");
  s->id = id;
  s->fds[0] = s->fds[1] = s->fds[2] = -1;
  s->next = spawns;
  spawns = s;
  return s;
}

static void release_inputs(struct spawn *s) {
  for (int i = 0; i < 3; i++) {
    if (s->fds[i] >= 0) close(s->fds[i]);
    s->fds[i] = -1;
  }
  free(s->message);
  s->message = NULL;
}

static void forget(struct spawn *s) {
  struct spawn **p = &spawns;
  while (*p != s) p = &(*p)->next;
  *p = s->next;
  release_inputs(s);
  free(s);
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child(struct spawn *s, char *cwd, char **argv, char **envp, int err_fd) {
  int32_t failure[2];
  sigset_t all;
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) (void)sigaction(sig, &dfl, NULL);
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  setsid();
  for (int i = 0; i < 3; i++) {
    /* dup2 clears FD_CLOEXEC; every other descriptor of the helper has it set. */
    if (s->fds[i] == i) {
      int flags = fcntl(i, F_GETFD);
      (void)fcntl(i, F_SETFD, flags & ~FD_CLOEXEC);
    } else if (dup2(s->fds[i], i) < 0) {
      failure[0] = errno;
      failure[1] = STAGE_EXEC;
      goto fail;
    }
  }
  if (chdir(cwd) < 0) {
    failure[0] = errno;
    failure[1] = STAGE_CHDIR;
    goto fail;
  }
  execve(argv[0], argv, envp);
  failure[0] = errno;
  failure[1] = STAGE_EXEC;
fail:
  (void)!write(err_fd, failure, sizeof failure);
  _exit(127);
}

static void start(struct spawn *s) {
  /* message: program \0 cwd \0 (arg \0){argc} (env \0)* */
  char *end = s->message + s->message_len;
  size_t strings = 0;
  for (char *p = s->message; p < end; p++)
    if (*p == '\0') strings++;
  if (s->message_len == 0 || end[-1] != '\0' || strings < 2 + (size_t)s->argc) {
    report('F', s->id, EINVAL, STAGE_MESSAGE);
    forget(s);
    return;
  }
  size_t envc = strings - 2 - s->argc;
  char **argv = calloc(s->argc + 2, sizeof *argv);
  char **envp = calloc(envc + 1, sizeof *envp);
  if (argv == NULL || envp == NULL) die("calloc");
  char *p = s->message;
  argv[0] = p;
  p += strlen(p) + 1;
  char *cwd = p;
  p += strlen(p) + 1;
  for (size_t i = 1; i <= s->argc; i++, p += strlen(p) + 1) argv[i] = p;
  for (size_t i = 0; i < envc; i++, p += strlen(p) + 1) envp[i] = p;
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) < 0) {
    report('F', s->id, errno, STAGE_FORK);
    free(argv);
    free(envp);
    forget(s);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) child(s, cwd, argv, envp, err_pipe[1]);
  int fork_errno = errno;
  close(err_pipe[1]);
  free(argv);
  free(envp);
  if (pid < 0) {
    close(err_pipe[0]);
    report('F', s->id, fork_errno, STAGE_FORK);
    forget(s);
    return;
  }
  /* Blocks until the exec succeeded (the pipe closes) or failed (its errno arrives). */
  int32_t failure[2];
  ssize_t n;
  do n = read(err_pipe[0], failure, sizeof failure);
  while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  release_inputs(s);
  if (n == (ssize_t)sizeof failure) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    report('F', s->id, failure[0], failure[1]);
    forget(s);
    return;
  }
  s->pid = pid;
  report('P', s->id, pid, 0);
}

/*
 * The daemon closed a stream of a spawn that has not started (it gave the spawn up: its request
 * ended, its start deadline passed, or another of its streams could not connect): the spawn's
 * other descriptors and message go too, or they would stay open for the helper's lifetime, and
 * 'F' tells the daemon it may forget the spawn. Its message may still be on its way (the
 * daemon sends it first, but the control connection is read on its own): the spawn then stays
 * as a tombstone that drops the message when it comes.
 */
static void abandon(int fd) {
  for (struct spawn *s = spawns; s != NULL; s = s->next) {
    if (s->pid != 0 || s->cancelled) continue;
    if (s->fds[0] != fd && s->fds[1] != fd && s->fds[2] != fd) continue;
    report('F', s->id, ECANCELED, STAGE_STREAMS);
    if (s->message != NULL) forget(s);
    else {
      release_inputs(s);
      s->cancelled = 1;
    }
    return;
  }
}

static void maybe_start(struct spawn *s) {
  if (s->pid == 0 && !s->cancelled && s->message != NULL && s->fds[0] >= 0 && s->fds[1] >= 0 &&
      s->fds[2] >= 0)
    start(s);
}

static void bury(struct spawn *s) {
  while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) {
  }
  forget(s);
}

/* Has the leader exited? Asked without reaping it (WNOWAIT): its pid stays taken. */
static int has_exited(const struct spawn *s, siginfo_t *info) {
  memset(info, 0, sizeof *info);
  return waitid(P_PID, (id_t)s->pid, info, WEXITED | WNOHANG | WNOWAIT) == 0 && info->si_pid != 0;
}

static void drain_signals(void) {
  char drain[64];
  while (read(signal_pipe[0], drain, sizeof drain) > 0) {
  }
}

static void reap(void) {
  drain_signals();
  for (struct spawn *s = spawns, *next; s != NULL; s = next) {
    next = s->next;
    siginfo_t info;
    if (s->pid == 0 || s->exited || !has_exited(s, &info)) continue;
    s->exited = 1;
    if (info.si_code == CLD_EXITED) report('X', s->id, info.si_status, 0);
    else report('X', s->id, -1, info.si_status);
    if (s->released) bury(s);
  }
}

static void release(uint32_t id) {
  struct spawn *s = find(id);
  if (s == NULL || s->pid == 0) {
    fprintf(stderr, "git-fcgi-spawnd: release of spawn %u, which is not running\n", id);
    return;
  }
  if (s->exited) bury(s);
  else s->released = 1;
}

/*
 * The daemon is gone (or the helper cannot go on): nothing else will end the backends, so the
 * helper does, as the daemon would have: SIGTERM to every group, SIGKILL after a grace period
 * (whatever the leaders did meanwhile: members can outlive them). Leaders are reaped only after
 * the SIGKILL, so that it cannot reach another group.
 */
static void end_all(int status) {
  int any = 0;
  for (struct spawn *s = spawns; s != NULL; s = s->next) {
    if (s->pid <= 0) continue;
    (void)kill(-s->pid, SIGTERM);
    any = 1;
  }
  for (long long until = now_ms() + ORPHAN_GRACE_MS, left; any && (left = until - now_ms()) > 0;)
    (void)poll(NULL, 0, (int)left);
  for (struct spawn *s = spawns; s != NULL; s = s->next)
    if (s->pid > 0) (void)kill(-s->pid, SIGKILL);
  /* Their zombies would otherwise go to init, which in a container may never reap them. */
  long long until = now_ms() + 1000;
  for (struct spawn *s = spawns; s != NULL; s = s->next) {
    while (s->pid > 0 && waitpid(s->pid, NULL, WNOHANG) == 0 && now_ms() < until)
      (void)poll(NULL, 0, 10);
  }
  exit(status);
}

static void spawn_message(uint32_t id, const unsigned char *m, size_t len) {
  if (len < 7) {
    report('F', id, EINVAL, STAGE_MESSAGE);
    return;
  }
  struct spawn *s = find_or_add(id);
  if (s->cancelled) {
    forget(s);
    return;
  }
  if (s->message != NULL || s->pid != 0) {
    /* A report would be taken for the spawn that has the id: this one is left unanswered. */
    fprintf(stderr, "git-fcgi-spawnd: spawn id %u used twice\n", id);
    return;
  }
  s->argc = (unsigned)m[5] | (unsigned)m[6] << 8;
  s->message_len = len - 7;
  s->message = malloc(s->message_len + 1);
  if (s->message == NULL) die("malloc");
  memcpy(s->message, m + 7, s->message_len);
  s->message[s->message_len] = '\0';
  maybe_start(s);
}

static void handle_message(const unsigned char *m, size_t len) {
  uint32_t id = len >= 5 ? get_u32(m + 1) : 0;
  if (len >= 5 && m[0] == 'S') spawn_message(id, m, len);
  else if (len == 5 && m[0] == 'R') release(id);
  else fprintf(stderr, "git-fcgi-spawnd: unknown control message of %zu bytes\n", len);
}

/*
 * A message over MAX_MESSAGE is not kept: its spawn fails (E2BIG, as execve would say) as soon
 * as its kind and id have arrived, and the rest of it is read and dropped.
 */
static void refuse_oversized(const unsigned char *m, uint32_t len) {
  if (m[0] == 'S') report('F', get_u32(m + 1), E2BIG, STAGE_MESSAGE);
  else fprintf(stderr, "git-fcgi-spawnd: control message of %u bytes\n", len);
}

/* Control messages, parsed from whatever the reads brought. */
static unsigned char *in_buf;
static size_t in_len, in_cap;
static size_t skipping; /* bytes of a refused message still to come */

static void read_control(void) {
  if (in_cap - in_len < 65536) {
    in_cap = in_cap * 2 + 65536;
    in_buf = realloc(in_buf, in_cap);
    if (in_buf == NULL) die("realloc");
  }
  ssize_t n = read(control_fd, in_buf + in_len, in_cap - in_len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) end_all(0); /* the daemon closed the control connection: it is stopping */
  in_len += (size_t)n;
  size_t at = 0;
  for (;;) {
    if (skipping > 0) {
      size_t dropped = in_len - at < skipping ? in_len - at : skipping;
      at += dropped;
      skipping -= dropped;
      if (skipping > 0) break;
    }
    if (in_len - at < 4) break;
    uint32_t len = get_u32(in_buf + at);
    if (len > MAX_MESSAGE) {
      if (in_len - at < 4 + 5) break;
      refuse_oversized(in_buf + at + 4, len);
      at += 4;
      skipping = len;
      continue;
    }
    if (in_len - at - 4 < len) break;
    handle_message(in_buf + at + 4, len);
    at += 4 + len;
  }
  memmove(in_buf, in_buf + at, in_len - at);
  in_len -= at;
}

struct hello {
  int fd;
  unsigned char bytes[HELLO_LEN];
  size_t have;
};
static struct hello hellos[MAX_PENDING_HELLO];
static size_t hello_count;

static void drop_hello(size_t i) {
  hellos[i] = hellos[--hello_count];
}

static void read_hello(size_t i) {
  struct hello *h = &hellos[i];
  ssize_t n = read(h->fd, h->bytes + h->have, HELLO_LEN - h->have);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    close(h->fd);
    drop_hello(i);
    return;
  }
  h->have += (size_t)n;
  if (h->have < HELLO_LEN) return;
  int fd = h->fd;
  uint32_t id = get_u32(h->bytes);
  unsigned char role = h->bytes[4];
  drop_hello(i);
  /* Back to blocking: from here on the descriptor is the backend's (or the control's). */
  (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  if (role == 'C' && control_fd < 0) {
    control_fd = fd;
    return;
  }
  struct spawn *s = role <= 2 ? find_or_add(id) : NULL;
  if (s == NULL || s->pid != 0 || s->cancelled || s->fds[role] >= 0) {
    close(fd);
    return;
  }
  s->fds[role] = fd;
  maybe_start(s);
}

static long long accept_paused_until; /* now_ms() */

static void accept_one(int listen_fd) {
  int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    /*
     * Out of descriptors: the connection stays queued and the socket readable, so polling it
     * again at once would spin. Descriptors come back as spawns start (their streams go to the
     * backend), and as the daemon gives up spawns that cannot complete (its start deadline).
     */
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
      accept_paused_until = now_ms() + ACCEPT_PAUSE_MS;
    return;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid != daemon_pid ||
      cred.uid != getuid() || hello_count == MAX_PENDING_HELLO) {
    close(fd);
    return;
  }
  hellos[hello_count].fd = fd;
  hellos[hello_count].have = 0;
  hello_count++;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: git-fcgi-spawnd SOCKET DAEMON_PID\n");
    return 2;
  }
  daemon_pid = (pid_t)atoi(argv[2]);
  close_inherited();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe2");
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* SIGTERM, not SIGKILL: a helper outliving the daemon has the backends to end first. */
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) die("prctl");
  if (getppid() != daemon_pid) return 0; /* the daemon died before the prctl */

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  const char *name = argv[1];
  size_t name_len = strlen(name);
  if (name_len == 0 || name_len >= sizeof addr.sun_path) {
    fprintf(stderr, "git-fcgi-spawnd: bad socket name\n");
    return 2;
  }
  memcpy(addr.sun_path, name, name_len);
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_len + 1);
  /* Node.js (libuv) connects to an abstract name as the whole zero-padded sun_path. */
  if (name[0] == '@') {
    addr.sun_path[0] = '\0';
    addr_len = sizeof addr;
  }
  int listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd < 0) die("socket");
  if (bind(listen_fd, (struct sockaddr *)&addr, addr_len) < 0) die("bind");
  if (listen(listen_fd, 1024) < 0) die("listen");
  if (write(STDOUT_FILENO, "ready\n", 6) != 6) die("write");
  /* 0-2 stay taken (stdout by /dev/null now), so no accepted descriptor lands on them. */
  int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0 || dup2(null_fd, STDOUT_FILENO) < 0) die("/dev/null");
  close(null_fd);

  struct pollfd *fds = NULL;
  size_t fds_cap = 0;
  for (;;) {
    size_t waiting = 0; /* streams of spawns not started yet */
    for (struct spawn *s = spawns; s != NULL; s = s->next)
      if (s->pid == 0 && !s->cancelled) waiting += 3;
    if (fds_cap < 3 + hello_count + waiting) {
      fds_cap = 2 * (3 + hello_count + waiting);
      fds = realloc(fds, fds_cap * sizeof *fds);
      if (fds == NULL) die("realloc");
    }
    int timeout = -1;
    int accepting = 1;
    if (accept_paused_until != 0) {
      long long left = accept_paused_until - now_ms();
      if (left > 0) {
        accepting = 0;
        timeout = (int)left;
      } else accept_paused_until = 0;
    }
    nfds_t n = 0;
    fds[n++] = (struct pollfd){.fd = accepting ? listen_fd : -1, .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = control_fd, .events = POLLIN}; /* ignored while -1 */
    for (size_t i = 0; i < hello_count; i++) fds[n++] = (struct pollfd){.fd = hellos[i].fd, .events = POLLIN};
    nfds_t first_waiting = n;
    /* No events asked: only POLLHUP, i.e. the daemon closed the stream (it gave the spawn up). */
    for (struct spawn *s = spawns; s != NULL; s = s->next)
      if (s->pid == 0 && !s->cancelled)
        for (int i = 0; i < 3; i++) fds[n++] = (struct pollfd){.fd = s->fds[i], .events = 0};
    if (poll(fds, n, timeout) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (terminated) end_all(0);
    if (fds[1].revents) reap();
    if (fds[2].revents) read_control();
    /* Hellos from the back: drop_hello moves the last entry into the freed slot. */
    for (size_t i = first_waiting - 3; i-- > 0;)
      if (fds[3 + i].revents && i < hello_count && hellos[i].fd == fds[3 + i].fd) read_hello(i);
    for (nfds_t i = first_waiting; i < n; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLHUP | POLLERR))) continue;
      abandon(fds[i].fd);
    }
    if (fds[0].revents) accept_one(listen_fd);
  }
}
