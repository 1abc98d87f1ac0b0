/* tcp_keep: a TCP client in a container of its own, for pod tests: it talks to a tcp_pair server
   (samples/workloads/tcp_pair.c, `serve --clients 0`) in another container of the same pod.

     tcp_keep keep HOST PORT --state PATH [--interval-ms MS]
     tcp_keep poll HOST PORT --state PATH [--interval-ms MS]

   keep: one connection, made at start and kept. Every tick it sends a counter and checks the
   echo. poll: a new connection every tick, one word, closed again (a client that needs no
   established connection to survive a checkpoint). Both write "nonce=X sent=N ok=1" to PATH
   after every echo; a refused connection, a reset one or a wrong echo writes ok=0 and ends the
   client, so a connection that did not survive shows in the state. The nonce is drawn at start:
   the same nonce after a restore means the same process.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

/* A connection to HOST:PORT; `patience` tries 20 ms apart (the server may not listen yet). */
static int connect_to(const char *host, int port, int patience) {
    struct sockaddr_storage sa;
    socklen_t len = address(host, port, &sa);
    for (int attempt = 0;; attempt++) {
        int fd = socket(sa.ss_family, SOCK_STREAM, 0);
        if (fd < 0) return -1;
        if (connect(fd, (struct sockaddr *)&sa, len) == 0) return fd;
        close(fd);
        if (attempt >= patience) return -1;
        usleep(20000);
    }
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

static void write_state(const char *path, uint64_t nonce, uint64_t sent, int ok) {
    char line[96], tmp[4096];
    int len = snprintf(line, sizeof line, "nonce=%016llx sent=%llu ok=%d\n", (unsigned long long)nonce,
                       (unsigned long long)sent, ok);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (write(fd, line, (size_t)len) != len) {}
    close(fd);
    rename(tmp, path); /* a reader never sees half a line */
}

/* One word over `fd`, and its echo checked. */
static int exchange(int fd, uint64_t word) {
    uint64_t back = 0;
    return full_io(fd, &word, sizeof word, 1) || full_io(fd, &back, sizeof back, 0) || back != word;
}

int main(int argc, char **argv) {
    if (argc < 4 || (strcmp(argv[1], "keep") != 0 && strcmp(argv[1], "poll") != 0)) {
        fprintf(stderr, "usage: tcp_keep keep|poll HOST PORT --state PATH [--interval-ms MS]\n");
        return 2;
    }
    int keep = strcmp(argv[1], "keep") == 0, port = atoi(argv[3]), interval_ms = 100;
    const char *host = argv[2], *state = "/state";
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--state") == 0) state = argv[i + 1];
        else if (strcmp(argv[i], "--interval-ms") == 0) interval_ms = atoi(argv[i + 1]);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t nonce = ((uint64_t)now.tv_nsec << 20) ^ (uint64_t)now.tv_sec ^ ((uint64_t)getpid() << 40);
    int fd = keep ? connect_to(host, port, 250) : -1;
    if (keep && fd < 0) {
        write_state(state, nonce, 0, 0);
        perror("connect");
        return 3;
    }
    for (uint64_t sent = 1;; sent++) {
        /* A polling client waits up to 10 s for a connection: a restore in progress may hold it. */
        int conn = keep ? fd : connect_to(host, port, 500);
        if (conn < 0 || exchange(conn, sent ^ nonce)) {
            write_state(state, nonce, sent - 1, 0);
            fprintf(stderr, "connection to %s:%d lost or echo wrong\n", host, port);
            return 3;
        }
        if (!keep) close(conn);
        write_state(state, nonce, sent, 1);
        usleep((useconds_t)interval_ms * 1000);
    }
}
