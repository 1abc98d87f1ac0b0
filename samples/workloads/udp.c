/*
 * udp: UDP sockets on the container's loopback.
 *
 *   udp [--state PATH] [--interval-ms N] [--port N]
 *
 * A receiver is bound to 127.0.0.1:PORT (default 7100); a sender, connected to it, sends a
 * numbered datagram every few milliseconds. The receiver checks that numbers only go up: a
 * datagram may be lost (UDP promises no more, and a checkpoint drops what sits in a receive
 * queue) but never repeated or reordered. A datagram from anyone else is answered with
 * "nonce=<hex> received=<n>\n", so a client from outside (in the container's network namespace)
 * can ask. State words: sent=N unsent=N received=N lost=N asked=N port=N
 */
#include "zoo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define MAGIC 0x7a6f6f7564700a01ULL

struct datagram {
	uint64_t magic;
	uint64_t seq;
};

int main(int argc, char **argv)
{
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	int port = zoo_arg_long(argc, argv, "--port", 7100), rx, tx;
	struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(port) }, from, self;
	socklen_t len = sizeof(self);
	uint64_t nonce, ticks = 0, sent = 0, received = 0, lost = 0, asked = 0, unsent = 0, next = 0, last_state;
	struct pollfd pfd;

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (rx < 0 || tx < 0 || bind(rx, (struct sockaddr *)&at, sizeof(at)) != 0 ||
	    connect(tx, (struct sockaddr *)&at, sizeof(at)) != 0 || getsockname(tx, (struct sockaddr *)&self, &len))
		return 1;

	pfd = (struct pollfd){ .fd = rx, .events = POLLIN };
	last_state = zoo_now_ms();
	for (;;) {
		struct datagram d = { MAGIC, sent };
		uint64_t now;

		/* A send may fail while the network is not there (ENETUNREACH): that is loss, not a bug. */
		if (send(tx, &d, sizeof(d), MSG_DONTWAIT) != sizeof(d))
			unsent++;
		sent++;
		while (poll(&pfd, 1, 5) > 0) {
			char buf[64];
			socklen_t flen = sizeof(from);
			ssize_t n = recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);

			if (n < 0)
				break;
			if (from.sin_port == self.sin_port && from.sin_addr.s_addr == self.sin_addr.s_addr) {
				if (n == sizeof(d))
					memcpy(&d, buf, sizeof(d));
				if (n != sizeof(d) || d.magic != MAGIC || d.seq < next) {
					zoo_fail("order");	/* repeated, reordered or not ours */
				} else {
					lost += d.seq - next;
					next = d.seq + 1;
					received++;
				}
			} else {
				int m = snprintf(buf, sizeof(buf), "nonce=%016llx received=%llu\n",
						 (unsigned long long)nonce, (unsigned long long)received);

				sendto(rx, buf, m, MSG_DONTWAIT, (struct sockaddr *)&from, flen);
				asked++;
			}
		}
		now = zoo_now_ms();
		if (now - last_state >= (uint64_t)interval) {
			last_state = now;
			zoo_state(nonce, ++ticks, "sent=%llu unsent=%llu received=%llu lost=%llu asked=%llu port=%d",
				  (unsigned long long)sent, (unsigned long long)unsent, (unsigned long long)received,
				  (unsigned long long)lost, (unsigned long long)asked, port);
		}
	}
}
