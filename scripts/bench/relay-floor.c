/*
 * relay-floor: the least work a FastCGI server can do for one git http-backend request, as a
 * reference point for `npm run bench -- --systems ...,relay-floor --cases clone`. Not a server
 * to deploy: no limits, no timeouts, no access control, no logs.
 *
 * Per connection (nginx opens one per request): a forked process reads the request's records,
 * starts SCRIPT_FILENAME with exactly the request's parameters as its environment, writes the
 * request body to it, then moves its output to nginx with splice(2): git's bytes never enter
 * this process, and each STDOUT record is as large as FastCGI allows (65535 bytes) or as what
 * the pipe holds. The CGI output goes out as it is (nginx parses the CGI head, as it does for
 * fcgiwrap).
 *
 * Half duplex, like fcgiwrap: the whole body goes in before any output is read. git
 * http-backend reads its whole request before it answers, so this is enough for a clone; a
 * backend that answers early could deadlock here (git-fcgi's relay does not have that limit).
 *
 * Built with -DSTDOUT_SOCKETPAIR (the bench's relay-floor-socket), the backend writes into a
 * UNIX socketpair instead of a pipe, and each record goes socket -> pipe -> connection: the path
 * git-fcgi-splice has (git-fcgi-spawnd hands backends sockets as stdio), for telling what the
 * pipe itself is worth.
 *
 * Built with -DCOALESCE_US=N as well (relay-floor-coalesce), a wake-up that finds less than a
 * record's worth waits N microseconds before it reads, as git-fcgi-splice does (whose wait adapts
 * to git's pace): git writes about 8 KB at a time, and a reader that takes each write alone pays
 * a wake-up for it, and so do git and nginx.
 *
 * Each connection process prints its own CPU time when it is done ("cpu SECONDS" on stderr, git's
 * not included), which the bench adds up as the floor's own CPU.
 *
 * Usage: relay-floor SOCKET_PATH   (prints "ready" once it listens)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { BEGIN_REQUEST = 1, END_REQUEST = 3, PARAMS = 4, STDIN = 5, STDOUT = 6 };
#define MAX_CONTENT 65535
#define MAX_PARAMS (1u << 20)
#define MAX_ENV 512

static void fail(const char *what) {
  fprintf(stderr, "relay-floor: %s: %s\n", what, strerror(errno));
  _exit(1);
}

static int read_full(int fd, void *buf, size_t len) {
  for (size_t done = 0; done < len;) {
    ssize_t n = read(fd, (char *)buf + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

static void write_full(int fd, const void *buf, size_t len) {
  for (size_t done = 0; done < len;) {
    ssize_t n = write(fd, (const char *)buf + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write");
    done += (size_t)n;
  }
}

static void header(unsigned char *h, int type, unsigned id, unsigned len) {
  h[0] = 1;
  h[1] = (unsigned char)type;
  h[2] = (unsigned char)(id >> 8);
  h[3] = (unsigned char)id;
  h[4] = (unsigned char)(len >> 8);
  h[5] = (unsigned char)len;
  h[6] = h[7] = 0;
}

/* FastCGI name-value length: 1 byte, or 4 with the top bit set. */
static int nv_len(const unsigned char *p, size_t avail, size_t *len) {
  if (avail < 1) return -1;
  if (!(p[0] & 0x80)) {
    *len = p[0];
    return 1;
  }
  if (avail < 4) return -1;
  *len = (size_t)(p[0] & 0x7f) << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
  return 4;
}

/* NAME=VALUE strings from the PARAMS stream; NULL-terminated. */
static char **environment(const unsigned char *p, size_t len) {
  static char *env[MAX_ENV + 2];
  size_t count = 0, at = 0;
  while (at < len && count < MAX_ENV) {
    size_t name_len, value_len;
    int a = nv_len(p + at, len - at, &name_len);
    if (a < 0) break;
    int b = nv_len(p + at + a, len - at - a, &value_len);
    if (b < 0) break;
    at += (size_t)(a + b);
    if (name_len + value_len > len - at) break;
    char *entry = malloc(name_len + value_len + 2);
    if (entry == NULL) fail("malloc");
    memcpy(entry, p + at, name_len);
    entry[name_len] = '=';
    memcpy(entry + name_len + 1, p + at + name_len, value_len);
    entry[name_len + 1 + value_len] = '\0';
    env[count++] = entry;
    at += name_len + value_len;
  }
  /* As fcgiwrap run with a clean environment (the bench starts it with PATH only). */
  static char path[] = "PATH=/usr/local/bin:/usr/bin:/bin";
  env[count++] = path;
  env[count] = NULL;
  return env;
}

static const char *lookup(char **env, const char *name) {
  size_t n = strlen(name);
  for (; *env != NULL; env++)
    if (strncmp(*env, name, n) == 0 && (*env)[n] == '=') return *env + n + 1;
  return NULL;
}

static void serve(int conn) {
  static unsigned char params[MAX_PARAMS];
  static unsigned char content[MAX_CONTENT + 256];
  size_t params_len = 0;
  unsigned id = 1;
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  pid_t pid = -1;
  for (;;) {
    unsigned char h[8];
    if (read_full(conn, h, 8) < 0) _exit(0);
    unsigned type = h[1], len = (unsigned)h[4] << 8 | h[5];
    id = (unsigned)h[2] << 8 | h[3];
    if (read_full(conn, content, len + h[6]) < 0) _exit(0);
    if (type == PARAMS && len > 0) {
      if (params_len + len > MAX_PARAMS) _exit(1);
      memcpy(params + params_len, content, len);
      params_len += len;
    } else if (type == PARAMS) {
      char **env = environment(params, params_len);
      const char *script = lookup(env, "SCRIPT_FILENAME");
#ifdef STDOUT_SOCKETPAIR
      if (script == NULL || pipe2(in, O_CLOEXEC) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) < 0)
        _exit(1);
#else
      if (script == NULL || pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) _exit(1);
#endif
      pid = fork();
      if (pid < 0) fail("fork");
      if (pid == 0) {
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0) _exit(127);
        char *argv[] = {(char *)script, NULL};
        execve(script, argv, env);
        _exit(127);
      }
      close(in[0]);
      close(out[1]);
    } else if (type == STDIN && len > 0 && pid > 0) {
      write_full(in[1], content, len);
    } else if (type == STDIN) {
      break;
    }
  }
  if (pid < 0) _exit(1);
  close(in[1]);
  for (;;) {
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    if (poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    int avail = 0;
    if (ioctl(out[0], FIONREAD, &avail) < 0) fail("FIONREAD");
    if (avail == 0) break; /* readable and empty: the backend closed its output */
#ifdef COALESCE_US
    if (avail < MAX_CONTENT) {
      struct timespec wait = {0, COALESCE_US * 1000L};
      nanosleep(&wait, NULL);
      if (ioctl(out[0], FIONREAD, &avail) < 0) fail("FIONREAD");
    }
#endif
    unsigned n = avail > MAX_CONTENT ? MAX_CONTENT : (unsigned)avail;
    int from = out[0];
#ifdef STDOUT_SOCKETPAIR
    static int mid[2] = {-1, -1};
    if (mid[0] < 0 && pipe2(mid, O_CLOEXEC) < 0) fail("pipe2");
    ssize_t got = splice(out[0], NULL, mid[1], NULL, n, 0);
    if (got <= 0) fail("splice");
    n = (unsigned)got;
    from = mid[0];
#endif
    unsigned char h[8];
    header(h, STDOUT, id, n);
    if (send(conn, h, 8, MSG_MORE) != 8) fail("send");
    while (n > 0) {
      ssize_t moved = splice(from, NULL, conn, NULL, n, SPLICE_F_MORE);
      if (moved < 0 && errno == EINTR) continue;
      if (moved <= 0) fail("splice");
      n -= (unsigned)moved;
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  unsigned char end[24] = {0};
  header(end, STDOUT, id, 0);
  header(end + 8, END_REQUEST, id, 8);
  end[19] = (unsigned char)(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
  /* Before the end goes out, so that it is in the log once the client has its answer. */
  struct rusage self;
  if (getrusage(RUSAGE_SELF, &self) == 0)
    fprintf(stderr, "cpu %.6f\n",
            (double)self.ru_utime.tv_sec + self.ru_stime.tv_sec +
                (self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6);
  write_full(conn, end, sizeof end);
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: relay-floor SOCKET_PATH\n");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sa.sa_flags = SA_NOCLDWAIT; /* connection processes reap themselves */
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(argv[1]) >= sizeof addr.sun_path) return 2;
  strcpy(addr.sun_path, argv[1]);
  unlink(argv[1]);
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      chmod(argv[1], 0666) < 0 || listen(listener, 1024) < 0)
    fail(argv[1]);
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) continue;
    pid_t pid = fork();
    if (pid == 0) {
      /* The connection process waits for its backend: it must not reap itself away. */
      sa.sa_flags = 0;
      sigaction(SIGCHLD, &sa, NULL);
      close(listener);
      serve(conn);
    }
    close(conn);
  }
}
