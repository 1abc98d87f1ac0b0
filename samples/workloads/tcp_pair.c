/* tcp_pair: a TCP server and its clients in one container, for checkpoint/restore tests.

     tcp_pair serve --state PATH --port N [--interval-ms MS] [--clients 0|1]
     tcp_pair ask HOST PORT

   serve: listens on 0.0.0.0:N (AF_INET) and [::]:N+1 (AF_INET6, dual-stack) and echoes every
   8-byte word it reads, from any number of clients, in one poll loop. With --clients 1 (the
   default) a forked client process keeps three connections to it: 127.0.0.1:N (AF_INET),
   ::ffff:127.0.0.1:N+1 (AF_INET6, v4-mapped) and ::1:N+1 (AF_INET6). Every tick it sends a
   counter over each connection and checks the echo; it writes "nonce=X sent=N conns=3 ok=1" to
   PATH. A wrong or missing echo ends the client with ok=0 written, so a connection that did not
   survive shows in the state. With --clients 0 nothing connects by itself, and the server
   writes "nonce=X served=N" (N: words echoed so far) to PATH at start and after every echo.
   The nonce is drawn at start: the same nonce after a restore means the same processes.

   ask: one connection to HOST:PORT (an IPv4 or IPv6 literal); sends a word, prints
   "echo ok" and exits 0 if it comes back unchanged. Static, so it also runs on the host
   (e.g. under `nsenter -n`).
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 64

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* A socket address for an IPv4 or IPv6 literal. */
static socklen_t address(const char *host, int port, struct sockaddr_storage *out) {
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof *v6;
    }
    fprintf(stderr, "not an address: %s\n", host);
    exit(2);
}

static int connect_to(const char *host, int port) {
    struct sockaddr_storage sa;
    socklen_t len = address(host, port, &sa);
    int fd = socket(sa.ss_family, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    for (int attempt = 0; connect(fd, (struct sockaddr *)&sa, len) != 0; attempt++) {
        if (attempt == 50) die(host);
        usleep(20000); /* the server may not listen yet */
    }
    return fd;
}

static int full_io(int fd, void *buf, size_t len, int writing) {
    char *p = buf;
    while (len) {
        ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void write_state(const char *path, uint64_t nonce, uint64_t sent, int conns, int ok) {
    char line[128];
    int len = snprintf(line, sizeof line, "nonce=%016llx sent=%llu conns=%d ok=%d\n", (unsigned long long)nonce,
                       (unsigned long long)sent, conns, ok);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (write(fd, line, (size_t)len) != len) {}
    close(fd);
    rename(tmp, path); /* a reader never sees half a line */
}

static void write_served(const char *path, uint64_t nonce, uint64_t served) {
    char line[96], tmp[4096];
    int len = snprintf(line, sizeof line, "nonce=%016llx served=%llu\n", (unsigned long long)nonce,
                       (unsigned long long)served);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (write(fd, line, (size_t)len) != len) {}
    close(fd);
    rename(tmp, path);
}

static int listener(int family, int port) {
    int fd = socket(family, SOCK_STREAM, 0), one = 1, zero = 0;
    if (fd < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage sa;
    socklen_t len;
    if (family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        len = address("::", port, &sa);
    } else {
        len = address("0.0.0.0", port, &sa);
    }
    if (bind(fd, (struct sockaddr *)&sa, len) || listen(fd, 16)) die("listen");
    return fd;
}

/* Echo every word back, to every client, forever; with a `state` path, count them there. */
static void serve(int l4, int l6, const char *state, uint64_t nonce) {
    uint64_t served = 0;
    struct pollfd fds[MAX_FDS] = {{.fd = l4, .events = POLLIN}, {.fd = l6, .events = POLLIN}};
    int nfds = 2;
    for (;;) {
        if (poll(fds, nfds, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        for (int i = 0; i < nfds; i++) {
            if (!fds[i].revents) continue;
            if (i < 2) {
                int c = accept(fds[i].fd, NULL, NULL);
                if (c >= 0 && nfds < MAX_FDS) fds[nfds++] = (struct pollfd){.fd = c, .events = POLLIN};
                else if (c >= 0) close(c);
                continue;
            }
            uint64_t word;
            if (full_io(fds[i].fd, &word, sizeof word, 0) || full_io(fds[i].fd, &word, sizeof word, 1)) {
                close(fds[i].fd); /* a client went away: forget it */
                fds[i--] = fds[--nfds];
            } else if (state) {
                write_served(state, nonce, ++served);
            }
        }
    }
}

static void clients(const char *state, int port, int interval_ms, uint64_t nonce) {
    const char *hosts[] = {"127.0.0.1", "::ffff:127.0.0.1", "::1"};
    int ports[] = {port, port + 1, port + 1}, conns[3];
    for (int i = 0; i < 3; i++) conns[i] = connect_to(hosts[i], ports[i]);
    for (uint64_t sent = 1;; sent++) {
        for (int i = 0; i < 3; i++) {
            uint64_t back = 0, word = sent * 3 + (uint64_t)i;
            if (full_io(conns[i], &word, sizeof word, 1) || full_io(conns[i], &back, sizeof back, 0) ||
                back != word) {
                write_state(state, nonce, sent - 1, 3, 0);
                fprintf(stderr, "connection to %s lost or echo wrong\n", hosts[i]);
                exit(3);
            }
        }
        write_state(state, nonce, sent, 3, 1);
        usleep((useconds_t)interval_ms * 1000);
    }
}

static int ask(const char *host, int port) {
    int fd = connect_to(host, port);
    uint64_t word = ((uint64_t)getpid() << 20) ^ (uint64_t)time(NULL), back = 0;
    if (full_io(fd, &word, sizeof word, 1) || full_io(fd, &back, sizeof back, 0) || back != word) {
        fprintf(stderr, "no echo from %s:%d\n", host, port);
        return 1;
    }
    printf("echo ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "ask") == 0) return ask(argv[2], atoi(argv[3]));
    if (argc < 2 || strcmp(argv[1], "serve") != 0) {
        fprintf(stderr, "usage: tcp_pair serve --state PATH --port N [--interval-ms MS] [--clients 0|1]\n"
                        "       tcp_pair ask HOST PORT\n");
        return 2;
    }
    const char *state = "/state";
    int port = 7000, interval_ms = 100, with_clients = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--state") == 0) state = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--interval-ms") == 0) interval_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--clients") == 0) with_clients = atoi(argv[i + 1]);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t nonce = ((uint64_t)now.tv_nsec << 32) ^ (uint64_t)now.tv_sec ^ ((uint64_t)getpid() << 48);
    signal(SIGPIPE, SIG_IGN);
    int l4 = listener(AF_INET, port), l6 = listener(AF_INET6, port + 1);
    if (!with_clients) {
        write_served(state, nonce, 0);
        serve(l4, l6, state, nonce);
    }
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        close(l4);
        close(l6);
        clients(state, port, interval_ms, nonce);
    }
    serve(l4, l6, NULL, nonce);
    return 0;
}
