/*
 * Sample workload for ckpt: holds memory with a known checksum and counts.
 *
 *   workload [--mem MiB] [--state PATH] [--interval-ms N] [--verify-every N] [--lock PATH]
 *            [--seed N] [--churn PERCENT]
 *
 * Memory is a mix of random, text-like and zero pages (1/4, 1/4, 1/2), so a
 * checkpoint of it compresses like a real service. Every tick it increments a
 * counter and rewrites PATH (atomically) with:
 *   nonce=<random per start> counter=<n> checksum=<fnv64 at start> verified=<last check> ticks_since_verify=<n>
 *   max_gap_ms=<longest time between two ticks>  (after a migration: how long it was frozen)
 * After a restore the nonce and checksum stay, the counter goes on, and the
 * next verification recomputes the checksum over the restored memory.
 * --lock holds an flock on PATH, which CRIU dumps only when asked to (--file-locks).
 * --seed picks the memory content (default: the same for every start). On SIGUSR1 the workload
 * rewrites a contiguous PERCENT of its memory with new content of the same mix (--churn, default
 * 5) and takes the new checksum: the "memory changed between two checkpoints" case.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <unistd.h>

static uint64_t rng_state;
static volatile sig_atomic_t churn_requested;

static void on_usr1(int sig)
{
	(void)sig;
	churn_requested = 1;
}

static uint64_t next_random(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill(unsigned char *mem, size_t size)
{
	static const char words[] = "checkpoint restore container memory image layer registry ";
	size_t quarter = size / 4, i;

	for (i = 0; i + 8 <= quarter; i += 8) {
		uint64_t r = next_random();
		memcpy(mem + i, &r, 8);
	}
	for (i = quarter; i < 2 * quarter; i++)
		mem[i] = words[(i * 7 + (i >> 12)) % (sizeof(words) - 1)];
	/* The second half stays zero but is touched, so the kernel really backs it. */
	for (i = 2 * quarter; i < size; i += 4096)
		mem[i] = 0;
}

static uint64_t checksum(const unsigned char *mem, size_t size)
{
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	for (i = 0; i < size; i += 8) {
		uint64_t w;
		memcpy(&w, mem + i, 8);
		h = (h ^ w) * 1099511628211ULL;
	}
	return h;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_state(const char *path, uint64_t nonce, uint64_t counter, uint64_t sum,
			uint64_t verified, uint64_t since, uint64_t max_gap)
{
	char tmp[4096], line[256];
	int fd, len;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	len = snprintf(line, sizeof(line),
		       "nonce=%016llx counter=%llu checksum=%016llx verified=%016llx ticks_since_verify=%llu "
		       "max_gap_ms=%llu\n",
		       (unsigned long long)nonce, (unsigned long long)counter,
		       (unsigned long long)sum, (unsigned long long)verified,
		       (unsigned long long)since, (unsigned long long)max_gap);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, len) == len)
		rename(tmp, path);
	close(fd);
}

int main(int argc, char **argv)
{
	size_t mib = 16;
	const char *state = "/state", *lock = NULL;
	long interval_ms = 100, verify_every = 10;
	unsigned char *mem;
	uint64_t nonce, sum, verified, counter = 0, since = 0, seed = 0x9e3779b97f4a7c15ULL;
	uint64_t last_tick, max_gap = 0;
	long churn_percent = 5;
	struct timespec ts;
	int i, fd;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mem"))
			mib = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--state"))
			state = argv[i + 1];
		else if (!strcmp(argv[i], "--interval-ms"))
			interval_ms = strtol(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--verify-every"))
			verify_every = strtol(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--lock"))
			lock = argv[i + 1];
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 0) | 1;
		else if (!strcmp(argv[i], "--churn"))
			churn_percent = strtol(argv[i + 1], NULL, 10);
	}

	/* Keep stdio inside the container, so CRIU never meets a host file. */
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}

	if (lock) {
		fd = open(lock, O_RDWR | O_CREAT, 0644);
		if (fd < 0 || flock(fd, LOCK_EX) != 0)
			return 1;
	}

	clock_gettime(CLOCK_REALTIME, &ts);
	rng_state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
	nonce = next_random();
	rng_state = seed; /* memory content depends on --seed only */
	signal(SIGUSR1, on_usr1);

	mem = malloc(mib << 20);
	if (!mem)
		return 1;
	fill(mem, mib << 20);
	sum = checksum(mem, mib << 20);
	verified = sum;
	last_tick = now_ms();

	for (;;) {
		uint64_t tick = now_ms();

		if (tick - last_tick > max_gap)
			max_gap = tick - last_tick;
		last_tick = tick;
		if (churn_requested) {
			size_t size = mib << 20, len = (size / 100 * churn_percent) & ~(size_t)4095;
			size_t start = (size / 10 * 4) & ~(size_t)4095;

			churn_requested = 0;
			rng_state ^= counter * 0x2545f4914f6cdd1dULL;
			fill(mem + start, len);
			sum = checksum(mem, size);
			verified = sum;
			since = 0;
		}
		counter++;
		if (++since >= (uint64_t)verify_every) {
			verified = checksum(mem, mib << 20);
			since = 0;
		}
		write_state(state, nonce, counter, sum, verified, since, max_gap);
		ts.tv_sec = interval_ms / 1000;
		ts.tv_nsec = (interval_ms % 1000) * 1000000L;
		nanosleep(&ts, NULL);
	}
}
