/*
 * fds: timerfd, eventfd and signalfd, all waited on through one epoll instance.
 *
 *   fds [--state PATH] [--period-ms N] [--interval-ms N] [--timer periodic|oneshot]
 *
 * A timerfd (default every 20 ms) wakes the loop: a periodic one (the kernel re-arms it), or a
 * one-shot one that the loop arms again after each expiration. Each expiration is posted to an
 * eventfd, which the loop drains on its own epoll wakeup: every expiration must come out of the
 * eventfd exactly once. SIGUSR1 and SIGUSR2 are blocked; SIGUSR1 is read from a signalfd and
 * counted; SIGUSR2 is never read, so one sent before a checkpoint must still be pending after
 * the restore. A periodic timer's period is read back from the timerfd at every state write, and
 * a second without any wakeup is an error (timer_silent).
 * State words: expirations=N posted=N drained=N usr1=N usr2_pending=0|1 timer=periodic|oneshot
 *   period_ms=N
 */
#include "zoo.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

int main(int argc, char **argv)
{
	long period = zoo_arg_long(argc, argv, "--period-ms", 20);
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	int periodic = strcmp(zoo_arg(argc, argv, "--timer", "periodic"), "oneshot") != 0;
	struct timespec every = { period / 1000, (period % 1000) * 1000000L }, none = { 0, 0 };
	struct itimerspec spec = { periodic ? every : none, every };
	uint64_t nonce, ticks = 0, expirations = 0, posted = 0, drained = 0, usr1 = 0, value, last_state = 0;
	struct epoll_event ev, events[4];
	int tfd, efd, sfd, ep, n, i;
	sigset_t mask, pending;

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigdelset(&mask, SIGUSR2);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || tfd < 0 || efd < 0 || ep < 0 || timerfd_settime(tfd, 0, &spec, NULL) != 0)
		return 1;
	ev.events = EPOLLIN;
	ev.data.fd = tfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	ev.data.fd = efd;
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
	ev.data.fd = sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

	for (;;) {
		n = epoll_wait(ep, events, 4, 1000);
		for (i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd == tfd && read(tfd, &value, sizeof(value)) == sizeof(value)) {
				expirations += value;
				if (write(efd, &value, sizeof(value)) == sizeof(value))
					posted += value;
				if (!periodic && timerfd_settime(tfd, 0, &spec, NULL) != 0)
					zoo_fail("rearm");
			} else if (fd == efd && read(efd, &value, sizeof(value)) == sizeof(value)) {
				drained += value;
			} else if (fd == sfd) {
				struct signalfd_siginfo si;

				while (read(sfd, &si, sizeof(si)) == sizeof(si))
					usr1 += si.ssi_signo == SIGUSR1;
			}
		}
		if (drained > posted || posted != expirations)
			zoo_fail("eventfd");	/* drained more than was posted, or an expiration was not posted */
		if (n == 0)
			zoo_fail("timer_silent");	/* a whole second without a wakeup */
		if (n == 0 || expirations - last_state >= (uint64_t)(interval / (period ? period : 1))) {
			struct itimerspec now;

			last_state = expirations;
			timerfd_gettime(tfd, &now);
			if (now.it_interval.tv_sec != spec.it_interval.tv_sec ||
			    now.it_interval.tv_nsec != spec.it_interval.tv_nsec)
				zoo_fail("timer_period");
			sigpending(&pending);
			zoo_state(nonce, ++ticks, "expirations=%llu posted=%llu drained=%llu usr1=%llu usr2_pending=%d "
				  "timer=%s period_ms=%ld", (unsigned long long)expirations, (unsigned long long)posted,
				  (unsigned long long)drained, (unsigned long long)usr1, sigismember(&pending, SIGUSR2),
				  periodic ? "periodic" : "oneshot",
				  periodic ? (long)(now.it_interval.tv_sec * 1000 + now.it_interval.tv_nsec / 1000000) : period);
		}
	}
}
