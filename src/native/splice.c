/*
 * git-fcgi-splice: moves a backend's output into the front end's FastCGI connection with
 * splice(2), so that the bytes of a large response (a clone's pack) never pass through Node.
 *
 * Why: relaying through Node costs about 100 us of the event loop per 64 KiB read-and-write
 * cycle (libuv's wake-up, the read callback, the record header, writev), 0.7 s of CPU for a
 * 320 MB clone. Here a cycle is three system calls and the bytes are never copied to user space:
 * splice(stdout -> pipe), write(header), splice(pipe -> connection).
 *
 * Usage: started by the daemon with a Node.js IPC channel (stdio 'ipc'; NODE_CHANNEL_FD names
 * it). Ends when the channel closes (the daemon is gone, or closed it), or on SIGTERM; then
 * every descriptor it holds is closed with it. It starts no process and writes no file.
 *
 * The channel carries Node's IPC protocol ("json" serialization): one JSON object per line, and
 * a descriptor passed (SCM_RIGHTS) with the first bytes of a line whose "cmd" is "NODE_HANDLE".
 * Each such line is acknowledged with {"cmd":"NODE_HANDLE_ACK"}, as Node expects before it
 * sends the next descriptor.
 *   daemon -> helper, with a descriptor: {"cmd":"NODE_HANDLE","type":"net.Native",
 *              "msg":{"splice":ID,"role":R,"request":RID}}   (the daemon writes exactly this)
 *              role 1: the backend's stdout (the daemon's end of it)
 *              role 2: the FastCGI connection; RID is the FastCGI request id for the records
 *            A splice starts once it has both.
 *   daemon -> helper: {"cancel":ID}: stop now, close both descriptors, and report where the
 *              FastCGI stream was left, so that the daemon can complete a record cut short
 *              before it ends the connection with a record the front end must reject:
 *              {"splice":ID,"bytes":N,"end":-1,"header_at":A,"owed":B}: A header bytes of
 *              the current record were written (8: all, or no record begun), and B bytes of its
 *              content are still owed. No report when ID is not splicing.
 *   helper -> daemon: {"splice":ID,"bytes":N}                     progress, at most every
 *                                                                 PROGRESS_MS while bytes move
 *                     {"splice":ID,"bytes":N,"end":0}             stdout reached its end, every
 *                                                                 byte written: the daemon ends
 *                                                                 the request (empty STDOUT,
 *                                                                 END_REQUEST)
 *                     {"splice":ID,"bytes":N,"end":ERRNO,"at":W}  failed: W 0 reading stdout,
 *                                                                 1 writing the connection
 *   N counts body bytes (record contents) written to the connection. Both descriptors are
 *   closed here before the last report, so the daemon's close of its own ends really closes.
 *
 * Each record is what stdout holds when it is read (at most 65535 bytes), spliced into a pipe;
 * then it goes out: an 8-byte header written with send(), then the bytes spliced from the pipe,
 * which holds exactly them. The daemon writes nothing to the connection while a splice runs (it
 * has waited until all of its own writes were out).
 *
 * Coalescing. git upload-pack writes its pack in sideband packets of about 8 KB, and a UNIX
 * socket wakes its reader for each. Read at once, every packet becomes a record, and each costs
 * a wake-up here, one in git (which wakes us), and one in the front end: measured on a 2-CPU VM
 * for a 321 MB pack, 20,000-35,000 records and 1.6-1.9 s of git's CPU. So when a wake-up finds
 * less than a record's worth queued, the job waits a moment (COALESCE_*_US, no longer) before it
 * reads, and the packets that come meanwhile go in the same record: about 5,000 records, and
 * git's CPU 1.5 s. All that came in a wait then goes out before the job waits again (a wait
 * per record would cap the stream at a record per wait). The wait adapts so that half a record
 * to two records come in it: longer when less came (git is slower, or paused), shorter when
 * more did (git may fill its socket buffer and block). Only bulk answers come here (the daemon
 * hands over past the first MiB), and a wait never exceeds a millisecond.
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORD 65535u
#define PROGRESS_MS 1000
#define MAX_LINE (64u * 1024u)
#define MAX_FDS_PER_READ 8
#define MAX_QUEUED_FDS 64
/* Cycles of one splice per wake-up before the others get their turn. */
#define CYCLES_PER_TURN 16
/* The wait for more of stdout before a short record is read (see Coalescing above). */
#ifndef COALESCE_START_US
#define COALESCE_START_US 150
#endif
#ifndef COALESCE_MIN_US
#define COALESCE_MIN_US 25
#endif
#ifndef COALESCE_MAX_US
#define COALESCE_MAX_US 1000
#endif

/* WAITING: for its descriptors; COALESCING: letting stdout fill until coalesce_at. */
enum state { WAITING, READING, COALESCING, WRITING_HEADER, WRITING_BODY };

struct splice_job {
  struct splice_job *next;
  uint32_t id;
  int src;       /* the backend's stdout */
  int dst;       /* the FastCGI connection */
  int pipe_r, pipe_w;
  uint16_t request;
  enum state state;
  unsigned char header[8];
  unsigned header_at;
  size_t body_left;  /* bytes of the current record in the pipe, still to write */
  uint64_t bytes;    /* record contents written */
  long long reported_ms;
  uint64_t reported_bytes;
  long long coalesce_at;    /* COALESCING: when to read (now_us) */
  unsigned coalesce_us;     /* the wait before a short record is read */
  int coalesced;            /* the next read comes after a wait */
  size_t drain;             /* bytes that came in the last wait, not all read yet: no wait */
};

static struct splice_job *jobs;
static int channel = -1;
static volatile sig_atomic_t terminated;

static void on_signal(int sig) {
  (void)sig;
  terminated = 1;
}

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long now_ms(void) { return now_us() / 1000; }

/* One line to the daemon. The channel is blocking for writes: lines are short and Node reads
 * its end whenever its loop turns. A daemon gone means exit. */
static void send_line(const char *line) {
  size_t len = strlen(line), at = 0;
  while (at < len) {
    ssize_t n = send(channel, line + at, len - at, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    at += (size_t)n;
  }
}

static struct splice_job *find(uint32_t id) {
  for (struct splice_job *j = jobs; j != NULL; j = j->next)
    if (j->id == id) return j;
  return NULL;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* Removes a job, closing everything it holds, and reports its end (end < 0: cancelled). */
static void finish(struct splice_job *job, int end, int at) {
  close_fd(&job->src);
  close_fd(&job->dst);
  close_fd(&job->pipe_r);
  close_fd(&job->pipe_w);
  {
    char line[160];
    if (end < 0) {
      unsigned header_at = 8;
      size_t owed = 0;
      if (job->state == WRITING_HEADER && job->header_at > 0) {
        header_at = job->header_at;
        owed = job->body_left;
      } else if (job->state == WRITING_BODY) owed = job->body_left;
      snprintf(line, sizeof line, "{\"splice\":%u,\"bytes\":%llu,\"end\":-1,\"header_at\":%u,\"owed\":%zu}\n",
               job->id, (unsigned long long)job->bytes, header_at, owed);
    } else if (end == 0)
      snprintf(line, sizeof line, "{\"splice\":%u,\"bytes\":%llu,\"end\":0}\n", job->id,
               (unsigned long long)job->bytes);
    else
      snprintf(line, sizeof line, "{\"splice\":%u,\"bytes\":%llu,\"end\":%d,\"at\":%d}\n", job->id,
               (unsigned long long)job->bytes, end, at);
    send_line(line);
  }
  for (struct splice_job **p = &jobs; *p != NULL; p = &(*p)->next) {
    if (*p == job) {
      *p = job->next;
      break;
    }
  }
  free(job);
}

/* Reports bytes moved since the last report, once PROGRESS_MS has passed since it. */
static void progress(struct splice_job *job) {
  long long now = now_ms();
  if (job->bytes == job->reported_bytes || now - job->reported_ms < PROGRESS_MS) return;
  job->reported_ms = now;
  job->reported_bytes = job->bytes;
  char line[96];
  snprintf(line, sizeof line, "{\"splice\":%u,\"bytes\":%llu}\n", job->id, (unsigned long long)job->bytes);
  send_line(line);
}

/* The header of a record of the `body_left` bytes now in the pipe; the writing begins. */
static void begin_record(struct splice_job *job) {
  size_t n = job->body_left;
  job->header[0] = 1; /* FCGI_VERSION_1 */
  job->header[1] = 6; /* FCGI_STDOUT */
  job->header[2] = (unsigned char)(job->request >> 8);
  job->header[3] = (unsigned char)(job->request & 0xff);
  job->header[4] = (unsigned char)(n >> 8);
  job->header[5] = (unsigned char)(n & 0xff);
  job->header[6] = 0;
  job->header[7] = 0;
  job->header_at = 0;
  job->state = WRITING_HEADER;
}

/* After a wait: what came in it sets the next one (half a record to two records). */
static void adapt(struct splice_job *job, int queued) {
  if (queued >= 2 * (int)MAX_RECORD) {
    job->coalesce_us /= 2;
    if (job->coalesce_us < COALESCE_MIN_US) job->coalesce_us = COALESCE_MIN_US;
  } else if (queued < (int)MAX_RECORD / 2) {
    job->coalesce_us *= 2;
    if (job->coalesce_us > COALESCE_MAX_US) job->coalesce_us = COALESCE_MAX_US;
  }
}

/*
 * Moves bytes until a descriptor would block, the output ends, or CYCLES_PER_TURN records have
 * gone. Returns 0 while the job goes on, -1 once it is finished (and freed).
 */
static int run(struct splice_job *job) {
  for (int cycle = 0; cycle < CYCLES_PER_TURN;) {
    switch (job->state) {
      case WAITING:
      case COALESCING:
        return 0;
      case READING: {
        /* What stdout holds now is the record; less than a record waits a moment first (see
         * Coalescing above). FIONREAD fails on nothing git-fcgi hands over (a socket); should
         * it, the record is whatever one splice takes. */
        int queued = 0;
        if (ioctl(job->src, FIONREAD, &queued) < 0) queued = -1;
        if (queued == 0) job->drain = 0;
        if (job->coalesced) {
          adapt(job, queued);
          job->coalesced = 0;
          job->drain = queued > 0 ? (size_t)queued : 0;
        } else if (queued > 0 && queued < (int)MAX_RECORD && job->drain == 0) {
          job->coalesced = 1;
          job->coalesce_at = now_us() + job->coalesce_us;
          job->state = COALESCING;
          return progress(job), 0;
        }
        size_t want = queued > 0 && queued < (int)MAX_RECORD ? (size_t)queued : MAX_RECORD;
        ssize_t n = splice(job->src, NULL, job->pipe_w, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return progress(job), 0;
          finish(job, errno, 0);
          return -1;
        }
        if (n == 0) {
          finish(job, 0, 0);
          return -1;
        }
        job->drain = job->drain > (size_t)n ? job->drain - (size_t)n : 0;
        job->body_left = (size_t)n;
        begin_record(job);
        break;
      }
      case WRITING_HEADER: {
        ssize_t n = send(job->dst, job->header + job->header_at, 8 - job->header_at,
                         MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return progress(job), 0;
          finish(job, errno, 1);
          return -1;
        }
        job->header_at += (unsigned)n;
        if (job->header_at == 8) job->state = WRITING_BODY;
        break;
      }
      case WRITING_BODY: {
        ssize_t n = splice(job->pipe_r, NULL, job->dst, NULL, job->body_left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return progress(job), 0;
          finish(job, errno, 1);
          return -1;
        }
        job->body_left -= (size_t)n;
        job->bytes += (uint64_t)n;
        if (job->body_left == 0) {
          job->state = READING;
          cycle++;
        }
        break;
      }
    }
  }
  progress(job);
  return 0;
}

static void start_if_ready(struct splice_job *job) {
  if (job->src < 0 || job->dst < 0 || job->state != WAITING) return;
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
    finish(job, errno, 0);
    return;
  }
  /* Room for a whole record however git's writes are cut into pages (a pipe holds 16 by
   * default); where the limit is lower, the default does too, only with smaller records. */
  (void)fcntl(p[1], F_SETPIPE_SZ, 256 * 1024);
  job->pipe_r = p[0];
  job->pipe_w = p[1];
  job->state = READING;
  job->coalesce_us = COALESCE_START_US;
  job->reported_ms = now_ms();
  run(job);
}

/* The unsigned number after "key": in line, or -1. */
static long long field(const char *line, const char *key) {
  char pattern[32];
  snprintf(pattern, sizeof pattern, "\"%s\":", key);
  const char *at = strstr(line, pattern);
  if (at == NULL) return -1;
  at += strlen(pattern);
  if (*at < '0' || *at > '9') return -1;
  long long v = 0;
  for (; *at >= '0' && *at <= '9'; at++) {
    v = v * 10 + (*at - '0');
    if (v > 0xffffffffLL) return -1;
  }
  return v;
}

static int queued_fds[MAX_QUEUED_FDS];
static size_t queued_count;

static int take_fd(void) {
  if (queued_count == 0) return -1;
  int fd = queued_fds[0];
  memmove(queued_fds, queued_fds + 1, (queued_count - 1) * sizeof *queued_fds);
  queued_count--;
  return fd;
}

static void handle_line(char *line) {
  if (strstr(line, "\"cmd\":\"NODE_HANDLE\"") != NULL) {
    int fd = take_fd();
    send_line("{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
    long long id = field(line, "splice"), role = field(line, "role"), request = field(line, "request");
    if (fd < 0) {
      fprintf(stderr, "git-fcgi-splice: a handle message without a descriptor\n");
      return;
    }
    if (id < 0 || (role != 1 && role != 2) || (role == 2 && (request < 1 || request > 0xffff))) {
      fprintf(stderr, "git-fcgi-splice: a handle message it does not understand\n");
      close(fd);
      return;
    }
    struct splice_job *job = find((uint32_t)id);
    if (job == NULL) {
      job = calloc(1, sizeof *job);
      if (job == NULL) {
        close(fd);
        return;
      }
      job->id = (uint32_t)id;
      job->src = job->dst = job->pipe_r = job->pipe_w = -1;
      job->state = WAITING;
      job->next = jobs;
      jobs = job;
    }
    int *slot = role == 1 ? &job->src : &job->dst;
    if (*slot >= 0) {
      fprintf(stderr, "git-fcgi-splice: splice %lld got role %lld twice\n", id, role);
      close(fd);
      return;
    }
    *slot = fd;
    if (role == 2) job->request = (uint16_t)request;
    start_if_ready(job);
    return;
  }
  long long cancel = field(line, "cancel");
  if (cancel >= 0) {
    struct splice_job *job = find((uint32_t)cancel);
    if (job != NULL) finish(job, -1, 0);
    return;
  }
  /* Anything else (Node's own internal messages) needs nothing from here. */
}

static char line_buf[MAX_LINE];
static size_t line_len;
static int skipping_line;

static void read_channel(void) {
  char data[16384];
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_READ)];
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n = recvmsg(channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
    _exit(0);
  }
  if (n == 0) _exit(0); /* the daemon is gone: every descriptor closes with this process */
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *fds = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      if (queued_count == MAX_QUEUED_FDS) {
        close(fds[i]);
        continue;
      }
      queued_fds[queued_count++] = fds[i];
    }
  }
  for (ssize_t i = 0; i < n; i++) {
    char c = data[i];
    if (c == '\n') {
      if (!skipping_line) {
        line_buf[line_len] = '\0';
        handle_line(line_buf);
      }
      line_len = 0;
      skipping_line = 0;
    } else if (!skipping_line) {
      if (line_len + 1 >= sizeof line_buf) {
        fprintf(stderr, "git-fcgi-splice: a message over %u bytes, skipped\n", MAX_LINE);
        skipping_line = 1;
        line_len = 0;
      } else line_buf[line_len++] = c;
    }
  }
}

int main(void) {
  const char *fd_name = getenv("NODE_CHANNEL_FD");
  if (fd_name == NULL || *fd_name == '\0') {
    fprintf(stderr, "usage: started by git-fcgi with an IPC channel (NODE_CHANNEL_FD)\n");
    return 2;
  }
  channel = atoi(fd_name);
  pid_t parent = getppid();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) return 1;
  if (getppid() != parent) return 0;
  /* Blocking for writes (send_line); reads use MSG_DONTWAIT. */
  int flags = fcntl(channel, F_GETFL);
  if (flags < 0) return 2;
  fcntl(channel, F_SETFL, flags & ~O_NONBLOCK);
  fcntl(channel, F_SETFD, FD_CLOEXEC);

  struct pollfd *fds = NULL;
  struct splice_job **owners = NULL;
  size_t cap = 0;
  while (!terminated) {
    size_t count = 1;
    for (struct splice_job *j = jobs; j != NULL; j = j->next) count++;
    if (cap < count) {
      cap = 2 * count;
      fds = realloc(fds, cap * sizeof *fds);
      owners = realloc(owners, cap * sizeof *owners);
      if (fds == NULL || owners == NULL) return 1;
    }
    nfds_t n = 0;
    fds[n] = (struct pollfd){.fd = channel, .events = POLLIN};
    owners[n++] = NULL;
    for (struct splice_job *j = jobs; j != NULL; j = j->next) {
      if (j->state == WAITING || j->state == COALESCING) continue;
      if (j->state == READING) fds[n] = (struct pollfd){.fd = j->src, .events = POLLIN};
      else fds[n] = (struct pollfd){.fd = j->dst, .events = POLLOUT};
      owners[n++] = j;
    }
    /* Bytes moved and not reported yet are reported PROGRESS_MS after the last report, also
     * when the job is blocked meanwhile (a client that stopped reading): the daemon's
     * idle_timeout counts from the last byte that moved, not from the last report. */
    long long timeout = -1; /* us */
    long long now = now_us();
    for (struct splice_job *j = jobs; j != NULL; j = j->next) {
      long long left = -1;
      if (j->state == COALESCING) left = j->coalesce_at - now;
      else if (j->state != WAITING && j->bytes != j->reported_bytes)
        left = (j->reported_ms + PROGRESS_MS) * 1000 - now;
      else continue;
      if (left < 0) left = 0;
      if (timeout < 0 || left < timeout) timeout = left;
    }
    struct timespec wait = {.tv_sec = timeout / 1000000, .tv_nsec = timeout % 1000000 * 1000};
    if (ppoll(fds, n, timeout < 0 ? NULL : &wait, NULL) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    /* Jobs first: the channel may cancel (free) one of them. */
    for (nfds_t i = 1; i < n; i++)
      if (fds[i].revents != 0) run(owners[i]);
    now = now_us();
    for (struct splice_job *j = jobs, *next; j != NULL; j = next) {
      next = j->next; /* run() may free j */
      if (j->state == COALESCING && j->coalesce_at <= now) {
        j->state = READING;
        run(j);
      }
    }
    for (struct splice_job *j = jobs; j != NULL; j = j->next)
      if (j->state != WAITING) progress(j);
    if (fds[0].revents != 0) read_channel();
  }
  return 0;
}
