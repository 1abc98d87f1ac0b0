/*
 * locks: file locks of the three kinds Linux has, held across a checkpoint.
 *
 *   locks [--state PATH] [--interval-ms N] [--dir DIR]
 *
 * The init process takes an flock() on DIR/zoo-flock, a POSIX (fcntl) write lock on bytes
 * 0-99 of DIR/zoo-posix and an open-file-description (OFD) write lock on DIR/zoo-ofd (DIR
 * defaults to /tmp). Its child opens each file itself every tick and checks that the locks are
 * still held, by the init process: flock(LOCK_NB) must fail, F_GETLK must name the holder, and
 * F_OFD_GETLK must see the OFD lock. It reports each check over a pipe. CRIU dumps file locks
 * only with --file-locks. State words: checks=N holder=<pid of the init process>
 */
#include "zoo.h"

#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static int open_in(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
}

static struct flock range(short type)
{
	return (struct flock){ .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100 };
}

/* One round of checks from another process: 0 if every lock is held as it should be. */
static char check(const char *dir, pid_t holder)
{
	int ff = open_in(dir, "zoo-flock"), pf = open_in(dir, "zoo-posix"), of = open_in(dir, "zoo-ofd");
	struct flock posix = range(F_WRLCK), ofd = range(F_WRLCK);
	char verdict = 'k';

	if (ff < 0 || pf < 0 || of < 0)
		verdict = 'o';
	else if (flock(ff, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		verdict = 'f';
	else if (fcntl(pf, F_GETLK, &posix) != 0 || posix.l_type != F_WRLCK || posix.l_pid != holder)
		verdict = 'p';
	else if (fcntl(of, F_OFD_GETLK, &ofd) != 0 || ofd.l_type != F_WRLCK)
		verdict = 'd';
	close(ff);
	close(pf);
	close(of);
	return verdict;
}

int main(int argc, char **argv)
{
	const char *dir = zoo_arg(argc, argv, "--dir", "/tmp");
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	struct flock posix = range(F_WRLCK), ofd = range(F_WRLCK);
	uint64_t nonce, ticks = 0, checks = 0;
	int ff, pf, of, report[2];
	char verdict;

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	ff = open_in(dir, "zoo-flock");
	pf = open_in(dir, "zoo-posix");
	of = open_in(dir, "zoo-ofd");
	if (ff < 0 || pf < 0 || of < 0 || flock(ff, LOCK_EX) != 0 || fcntl(pf, F_SETLK, &posix) != 0 ||
	    fcntl(of, F_OFD_SETLK, &ofd) != 0 || pipe(report) != 0)
		return 1;

	if (fork() == 0) {
		pid_t holder = getppid();

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(report[0]);
		for (;;) {
			verdict = check(dir, holder);
			if (write(report[1], &verdict, 1) != 1)
				_exit(1);
			zoo_sleep_ms(interval);
		}
	}
	close(report[1]);
	for (;;) {
		if (read(report[0], &verdict, 1) != 1) {
			zoo_fail("checker_gone");
			zoo_sleep_ms(interval);
		} else if (verdict != 'k') {
			static char why[] = "lock_?";

			why[5] = verdict;	/* o: open, f: flock, p: posix, d: ofd */
			zoo_fail(why);
		} else {
			checks++;
		}
		zoo_state(nonce, ++ticks, "checks=%llu holder=%d", (unsigned long long)checks, getpid());
		waitpid(-1, NULL, WNOHANG);
	}
}
