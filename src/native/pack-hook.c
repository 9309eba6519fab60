/*
 * git-fcgi-pack-hook: git upload-pack's uploadpack.packObjectsHook when git-fcgi's pack cache
 * is on. git runs it as `HOOK git [--shallow-file ""] pack-objects --revs ...` in the repository,
 * with pack-objects' stdin on its stdin and its stdout/stderr read by upload-pack.
 *
 * It asks git-fcgi (GIT_FCGI_PACK_SOCKET, GIT_FCGI_PACK_TOKEN) whether it serves the pack:
 *   hook -> daemon: u32 BE length, then NUL-terminated strings: token, cwd, argc, stdin length,
 *                   argv[1..], environment; then the stdin bytes.
 *   daemon -> hook: 'Y' (frames follow) or 'N' (run it yourself).
 *   frames: 1 type byte, u32 BE length, payload:
 *     'p' the cached pack's file (a path; empty when it has none), before any 'f';
 *     'f' u64 BE: the file now holds this many bytes: the hook copies what it has not yet sent
 *         straight from the file to its stdout (sendfile), so a cached pack never passes
 *         through the daemon on its way to upload-pack;
 *     'o' pack bytes inline (those the file could not take: a full disk, the budget), only
 *         after the last 'f';
 *     'e' stderr (pack-objects' progress); 'x' the exit code (1 byte), last.
 * The daemon keeps the file until this connection closes, so it is never removed before the
 * hook opened it. The daemon must run as the hook's user (SO_PEERCRED), else the hook does
 * not listen to it.
 * Whatever goes wrong before the first byte of the pack (no variables, no daemon, a refusal, a
 * protocol error, the connection lost, a file that cannot be opened) ends in the hook running
 * `git pack-objects` itself with the same stdin (kept in a memfd): the cache never fails a
 * fetch that git alone would serve.
 * It is exec'd once per fetch: no allocations beyond the message, no dynamic loading of note.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

static char **run_argv;
static int stdin_fd = -1;

/* Runs argv[1..] (git pack-objects ...) on the original stdin; never returns. */
static void run_itself(void) {
  signal(SIGPIPE, SIG_DFL);
  if (stdin_fd >= 0) {
    if (lseek(stdin_fd, 0, SEEK_SET) != 0 || dup2(stdin_fd, 0) < 0) {
      perror("git-fcgi-pack-hook: stdin");
      _exit(128);
    }
    close(stdin_fd);
  }
  unsetenv("GIT_FCGI_PACK_SOCKET");
  unsetenv("GIT_FCGI_PACK_TOKEN");
  execvp(run_argv[1], run_argv + 1);
  fprintf(stderr, "git-fcgi-pack-hook: cannot run %s: %s\n", run_argv[1], strerror(errno));
  _exit(128);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* 1: all n bytes read; 0: end of stream first; -1: error. */
static int read_all(int fd, char *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return got == 0 ? 0 : -1;
    got += (size_t)r;
  }
  return 1;
}

/* Copies all of stdin into a memfd (its length returned), so that it can be sent and still run. */
static long long keep_stdin(void) {
  stdin_fd = memfd_create("git-fcgi-pack-stdin", MFD_CLOEXEC);
  if (stdin_fd < 0) return -1;
  char buf[65536];
  long long total = 0;
  for (;;) {
    ssize_t r = read(0, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -2;
    if (r == 0) return total;
    if (write_all(stdin_fd, buf, (size_t)r) < 0) return -2;
    total += r;
  }
}

static char *message;
static size_t message_len, message_cap;

static int add(const char *s, size_t n) {
  if (message_len + n + 1 > message_cap) {
    size_t cap = (message_len + n + 1) * 2;
    char *grown = realloc(message, cap);
    if (grown == NULL) return -1;
    message = grown;
    message_cap = cap;
  }
  memcpy(message + message_len, s, n);
  message[message_len + n] = '\0';
  message_len += n + 1;
  return 0;
}

static int connect_to(const char *where) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t n = strlen(where);
  if (n == 0 || n >= sizeof addr.sun_path) return -1;
  memcpy(addr.sun_path, where, n);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  if (where[0] == '@') {
    /* Abstract, as Node binds it: the whole sun_path, NUL-padded, is the name. */
    addr.sun_path[0] = '\0';
    len = sizeof addr;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&addr, len) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Whether the daemon on `sock` runs as this user (it names files for the hook to send). */
static int same_user(int sock) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return 0;
  return cred.uid == geteuid();
}

/* A frame's payload (at most 64 KiB) and a NUL after it. */
static char buf[65536 + 1];

/*
 * Copies the file's bytes [*off, end) to stdout: sendfile, or read and write where the file
 * system cannot. 0: done; -1: stdout is gone; -2: the file is shorter than announced.
 */
static int copy_file(int file, off_t *off, off_t end) {
  int can_sendfile = 1;
  while (*off < end) {
    size_t want = (size_t)(end - *off);
    if (want > (1 << 30)) want = 1 << 30;
    if (can_sendfile) {
      ssize_t s = sendfile(1, file, off, want);
      if (s < 0 && errno == EINTR) continue;
      if (s < 0 && (errno == EINVAL || errno == ENOSYS)) {
        can_sendfile = 0;
        continue;
      }
      if (s < 0) return errno == EPIPE ? -1 : -2;
      if (s == 0) return -2;
      continue;
    }
    if (want > sizeof buf - 1) want = sizeof buf - 1;
    ssize_t r = pread(file, buf, want, *off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -2;
    if (write_all(1, buf, (size_t)r) < 0) return -1;
    *off += r;
  }
  return 0;
}

int main(int argc, char **argv) {
  run_argv = argv;
  if (argc < 2) {
    fprintf(stderr, "usage: git-fcgi-pack-hook git pack-objects ...\n");
    return 129;
  }
  const char *where = getenv("GIT_FCGI_PACK_SOCKET");
  const char *token = getenv("GIT_FCGI_PACK_TOKEN");
  if (where == NULL || token == NULL) run_itself();
  long long stdin_len = keep_stdin();
  if (stdin_len == -2) {
    perror("git-fcgi-pack-hook: reading stdin");
    return 128;
  }
  if (stdin_len < 0) run_itself(); /* no memfd: stdin untouched, git does the work */
  signal(SIGPIPE, SIG_IGN);

  char cwd[4096], num[32];
  if (getcwd(cwd, sizeof cwd) == NULL) run_itself();
  if (add("\0\0\0", 3) < 0) run_itself(); /* room for the length (3 bytes + the NUL) */
  message_len = 4;
  snprintf(num, sizeof num, "%d", argc - 1);
  if (add(token, strlen(token)) < 0 || add(cwd, strlen(cwd)) < 0 || add(num, strlen(num)) < 0) run_itself();
  snprintf(num, sizeof num, "%lld", stdin_len);
  if (add(num, strlen(num)) < 0) run_itself();
  for (int i = 1; i < argc; i++)
    if (add(argv[i], strlen(argv[i])) < 0) run_itself();
  for (char **e = environ; *e != NULL; e++)
    if (add(*e, strlen(*e)) < 0) run_itself();
  uint32_t body = (uint32_t)(message_len - 4);
  message[0] = (char)(body >> 24);
  message[1] = (char)(body >> 16);
  message[2] = (char)(body >> 8);
  message[3] = (char)body;

  int sock = connect_to(where);
  if (sock < 0 || !same_user(sock)) run_itself();
  if (write_all(sock, message, message_len) < 0) run_itself();
  off_t sent = 0;
  while (sent < stdin_len) {
    ssize_t s = sendfile(sock, stdin_fd, &sent, (size_t)(stdin_len - sent));
    if (s < 0 && errno == EINTR) continue;
    if (s <= 0) run_itself();
  }
  char answer;
  if (read_all(sock, &answer, 1) != 1 || answer != 'Y') run_itself();

  int wrote_pack = 0;
  int file = -1;
  off_t off = 0; /* pack bytes written to stdout */
  for (;;) {
    char head[5];
    int r = read_all(sock, head, 5);
    if (r != 1) break;
    uint32_t len = ((uint32_t)(unsigned char)head[1] << 24) | ((uint32_t)(unsigned char)head[2] << 16) |
                   ((uint32_t)(unsigned char)head[3] << 8) | (uint32_t)(unsigned char)head[4];
    if (head[0] == 'x') {
      char code = 0;
      if (len != 1 || read_all(sock, &code, 1) != 1) break;
      return (unsigned char)code;
    }
    if (len >= sizeof buf) break;
    if (read_all(sock, buf, len) != 1) break;
    if (head[0] == 'p') {
      if (file >= 0 || wrote_pack) break;
      if (len == 0) continue; /* no file: everything comes inline */
      buf[len] = '\0';
      file = open(buf, O_RDONLY | O_CLOEXEC);
      if (file < 0) run_itself(); /* removed meanwhile: nothing written yet, git can do it */
    } else if (head[0] == 'f') {
      if (file < 0 || len != 8) break;
      uint64_t end = 0;
      for (int i = 0; i < 8; i++) end = end << 8 | (unsigned char)buf[i];
      if ((off_t)end < off) break;
      off_t before = off;
      int c = copy_file(file, &off, (off_t)end);
      if (off > before) wrote_pack = 1;
      if (c == -1) return 141; /* upload-pack is gone */
      if (c == -2) {
        if (!wrote_pack) run_itself();
        fprintf(stderr, "git-fcgi-pack-hook: the cached pack is shorter than announced\n");
        return 128;
      }
    } else if (head[0] == 'o') {
      if (write_all(1, buf, len) < 0) return 141; /* upload-pack is gone */
      off += len;
      wrote_pack = 1;
    } else if (head[0] == 'e') {
      (void)write_all(2, buf, len);
    } else {
      break;
    }
  }
  /* The daemon went away mid-answer: before the pack began, git can still do it alone. */
  if (!wrote_pack) run_itself();
  fprintf(stderr, "git-fcgi-pack-hook: git-fcgi stopped sending the pack\n");
  return 128;
}
