/*
 * pipes: a process tree joined in a ring by two pipes and a named FIFO.
 *
 *   pipes [--state PATH] [--interval-ms N] [--fifo PATH] [--in-flight N]
 *
 * The init process (P) forks a child (A), which forks a grandchild (B). Tokens go round
 *   P --pipe--> A --pipe--> B --FIFO--> P
 * with N of them in flight at once, so the pipes and the FIFO always hold data a checkpoint
 * must carry. Each token is {sequence, check word}; every stage checks that the sequence is the
 * next one it expects and that the check word matches it. A stage that sees a wrong token exits,
 * and P, which reads the end of the ring, sees the FIFO close. State words (written by P):
 *   rounds=<tokens back at P> pids=P,A,B fifo=PATH
 */
#include "zoo.h"

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

struct token {
	uint64_t seq;
	uint64_t check;
};

static uint64_t check_of(uint64_t nonce, uint64_t seq)
{
	return (seq * 0x9e3779b97f4a7c15ULL) ^ nonce;
}

/* A and B: pass every token on, after checking it is the next one. Returns on a broken ring. */
static void relay(int in, int out, uint64_t nonce)
{
	struct token t;
	uint64_t expect = 0;

	while (zoo_read_full(in, &t, sizeof(t)) == 0) {
		if (t.seq != expect++ || t.check != check_of(nonce, t.seq))
			return;
		if (zoo_write_full(out, &t, sizeof(t)) != 0)
			return;
	}
}

int main(int argc, char **argv)
{
	const char *fifo = zoo_arg(argc, argv, "--fifo", "/tmp/zoo.fifo");
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	long in_flight = zoo_arg_long(argc, argv, "--in-flight", 16);
	uint64_t nonce, ticks = 0, sent = 0, back = 0, last_state;
	int p_to_a[2], a_to_b[2], ring_end;
	pid_t a, b = 0;
	struct pollfd pfd;
	struct token t;

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	signal(SIGPIPE, SIG_IGN);
	unlink(fifo);
	if (mkfifo(fifo, 0600) != 0 || pipe(p_to_a) != 0)
		return 1;

	a = fork();
	if (a == 0) {
		close(p_to_a[1]);
		if (pipe(a_to_b) != 0)
			_exit(1);
		if (fork() == 0) {	/* B: the grandchild closes the ring through the FIFO */
			int out = open(fifo, O_WRONLY);

			close(a_to_b[1]);
			close(p_to_a[0]);
			relay(a_to_b[0], out, nonce);
			_exit(1);
		}
		close(a_to_b[0]);
		relay(p_to_a[0], a_to_b[1], nonce);
		_exit(1);
	}
	close(p_to_a[0]);
	ring_end = open(fifo, O_RDONLY);	/* waits for B to open its end */
	if (ring_end < 0)
		return 1;

	last_state = zoo_now_ms();
	pfd.fd = ring_end;
	pfd.events = POLLIN;
	for (;;) {
		uint64_t now;

		while (sent < back + (uint64_t)in_flight && !zoo_error) {
			t.seq = sent;
			t.check = check_of(nonce, sent);
			if (zoo_write_full(p_to_a[1], &t, sizeof(t)) != 0)
				zoo_fail("pipe_write");
			sent++;
		}
		if (poll(&pfd, 1, 10) > 0 && !zoo_error) {
			if (zoo_read_full(ring_end, &t, sizeof(t)) != 0)
				zoo_fail("ring_closed");	/* a stage saw a wrong token and left */
			else if (t.seq != back || t.check != check_of(nonce, back))
				zoo_fail("token");
			else
				back++;
			zoo_sleep_ms(1);	/* about a thousand rounds a second: the ring stays full */
		}
		now = zoo_now_ms();
		if (now - last_state >= (uint64_t)interval) {
			if (!b) {	/* B is A's child: find it through /proc to report the tree */
				char path[64];
				FILE *f;

				snprintf(path, sizeof(path), "/proc/%d/task/%d/children", a, a);
				f = fopen(path, "r");
				if (f) {
					if (fscanf(f, "%d", &b) != 1)
						b = 0;
					fclose(f);
				}
			}
			last_state = now;
			zoo_state(nonce, ++ticks, "rounds=%llu pids=%d,%d,%d fifo=%s", (unsigned long long)back,
				  getpid(), a, b, fifo);
		}
		waitpid(-1, NULL, WNOHANG);
	}
}
