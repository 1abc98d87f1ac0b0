/*
 * unix: a unix socketpair between two processes, and a listening unix socket.
 *
 *   unix [--state PATH] [--interval-ms N] [--listen PATH]
 *
 * The init process (the server) listens on PATH (default /tmp/zoo.sock, inside the container's
 * root, so a client on the host reaches it through the rootfs) and answers every line it reads,
 * on any connection, with "nonce=<hex> answered=<n>\n". Its child (the client) every tick:
 *   - sends a sequence number over the socketpair; the server sends back its successor;
 *   - asks over one connection it holds open from the start;
 *   - opens a fresh connection, asks, and closes it (the listener still accepts);
 * and checks every answer. A client that finds one wrong reports it over the socketpair and
 * leaves. State words (written by the server):
 *   pairs=<socketpair round trips> accepted=<connections> answered=<lines answered> listen=PATH
 */
#include "zoo.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define MAX_CONNS 32
#define FAILED UINT64_MAX	/* the client's word on the socketpair for "an answer was wrong" */

static struct sockaddr_un address(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	return sun;
}

/* One question on a connection: 0 if the answer carries our nonce. */
static int ask(int fd, uint64_t nonce)
{
	char answer[128], want[40];
	ssize_t n;

	if (zoo_write_full(fd, "ask\n", 4) != 0)
		return -1;
	n = read(fd, answer, sizeof(answer) - 1);
	if (n <= 0)
		return -1;
	answer[n] = 0;
	snprintf(want, sizeof(want), "nonce=%016llx ", (unsigned long long)nonce);
	return strncmp(answer, want, strlen(want)) ? -1 : 0;
}

static int dial(const char *path)
{
	struct sockaddr_un sun = address(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void client(int pair, const char *path, long interval, uint64_t nonce)
{
	uint64_t seq = 0, reply;
	int held = dial(path), fresh;

	for (;; seq += 2) {
		const char *broken = NULL;

		if (zoo_write_full(pair, &seq, sizeof(seq)) != 0 || zoo_read_full(pair, &reply, sizeof(reply)) != 0)
			_exit(1);
		if (reply != seq + 1)
			broken = "pair";
		else if (held < 0 || ask(held, nonce) != 0)
			broken = "held";
		else if ((fresh = dial(path)) < 0)
			broken = "connect";
		else if (ask(fresh, nonce) != 0)
			broken = "fresh";
		if (broken) {
			reply = FAILED;
			zoo_write_full(pair, &reply, sizeof(reply));
			zoo_write_full(pair, broken, strlen(broken) + 1);
			_exit(1);
		}
		close(fresh);
		zoo_sleep_ms(interval);
	}
}

int main(int argc, char **argv)
{
	static char why[32];
	const char *path = zoo_arg(argc, argv, "--listen", "/tmp/zoo.sock");
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	struct pollfd fds[2 + MAX_CONNS];
	uint64_t nonce, ticks = 0, pairs = 0, accepted = 0, answered = 0, last_state, word;
	struct sockaddr_un sun = address(path);
	int pair[2], listener, nfds = 2, i;
	char line[128];

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	signal(SIGPIPE, SIG_IGN);
	unlink(path);
	listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *)&sun, sizeof(sun)) != 0 || listen(listener, 16) != 0)
		return 1;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
		return 1;
	if (fork() == 0) {
		close(pair[0]);
		close(listener);
		client(pair[1], path, interval, nonce);
	}
	close(pair[1]);

	fds[0] = (struct pollfd){ .fd = listener, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = pair[0], .events = POLLIN };
	last_state = zoo_now_ms();
	for (;;) {
		uint64_t now;

		if (poll(fds, nfds, 20) > 0) {
			if (fds[0].revents & POLLIN) {
				int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);

				if (fd >= 0 && nfds < 2 + MAX_CONNS) {
					fds[nfds++] = (struct pollfd){ .fd = fd, .events = POLLIN };
					accepted++;
				} else if (fd >= 0) {
					close(fd);
				}
			}
			if (fds[1].revents & (POLLIN | POLLHUP)) {
				if (zoo_read_full(pair[0], &word, sizeof(word)) != 0) {
					zoo_fail("client_gone");
					fds[1].fd = -1;
				} else if (word == FAILED) {
					ssize_t n = read(pair[0], why, sizeof(why) - 1);

					why[n > 0 ? n : 0] = 0;
					zoo_fail(why[0] ? why : "client");
					fds[1].fd = -1;
				} else {
					word++;
					zoo_write_full(pair[0], &word, sizeof(word));
					pairs++;
				}
			}
			for (i = 2; i < nfds; i++) {
				ssize_t n;

				if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				n = read(fds[i].fd, line, sizeof(line));
				if (n > 0) {
					int len = snprintf(line, sizeof(line), "nonce=%016llx answered=%llu\n",
							   (unsigned long long)nonce, (unsigned long long)++answered);

					zoo_write_full(fds[i].fd, line, len);
				} else {
					close(fds[i].fd);
					fds[i--] = fds[--nfds];
				}
			}
		}
		now = zoo_now_ms();
		if (now - last_state >= (uint64_t)interval) {
			last_state = now;
			zoo_state(nonce, ++ticks, "pairs=%llu accepted=%llu answered=%llu listen=%s",
				  (unsigned long long)pairs, (unsigned long long)accepted, (unsigned long long)answered,
				  path);
		}
		waitpid(-1, NULL, WNOHANG);
	}
}
