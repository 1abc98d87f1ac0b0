/*
 * What every zoo workload shares: its command line, stdio kept inside the container, a nonce
 * drawn at start, and the state file the tests read from outside.
 *
 * The state file is one line of key=value words, rewritten atomically (write + rename):
 *   nonce=<hex> ticks=<n> ok=<1|0> [error=<what broke>] <workload's own fields...>
 * The nonce is drawn once per start: the same nonce after a restore means the same processes.
 * ok turns 0 (and stays 0) the moment a workload finds its own invariant broken; error says which.
 */
#ifndef ZOO_H
#define ZOO_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char *zoo_state_path = "/state";
static const char *zoo_error;	/* first broken invariant, NULL while all is well */

/* The value after `--name` on the command line, or `fallback`. */
static inline const char *zoo_arg(int argc, char **argv, const char *name, const char *fallback)
{
	int i;

	for (i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return fallback;
}

static inline long zoo_arg_long(int argc, char **argv, const char *name, long fallback)
{
	const char *value = zoo_arg(argc, argv, name, NULL);

	return value ? strtol(value, NULL, 0) : fallback;
}

/* Reads --state and moves stdio to the container's /dev/null: CRIU cannot dump a descriptor of
 * a file outside the container, which the runtime's stdio would be. */
static inline void zoo_start(int argc, char **argv)
{
	int fd = open("/dev/null", O_RDWR);

	zoo_state_path = zoo_arg(argc, argv, "--state", zoo_state_path);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

static inline uint64_t zoo_nonce(void)
{
	uint64_t nonce = 0;

	while (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce) || nonce == 0)
		;
	return nonce;
}

/* Records the first broken invariant; the state file then says ok=0 error=<what> for good. */
static inline void zoo_fail(const char *what)
{
	if (!zoo_error)
		zoo_error = what;
}

/* Rewrites the state file: the common words, then the workload's own (printf-style). */
static inline void zoo_state(uint64_t nonce, uint64_t ticks, const char *fmt, ...)
{
	char tmp[4096], line[2048];
	va_list ap;
	int fd, len;

	len = snprintf(line, sizeof(line), "nonce=%016llx ticks=%llu ok=%d", (unsigned long long)nonce,
		       (unsigned long long)ticks, zoo_error ? 0 : 1);
	if (zoo_error)
		len += snprintf(line + len, sizeof(line) - len, " error=%s", zoo_error);
	if (fmt && *fmt) {
		line[len++] = ' ';
		va_start(ap, fmt);
		len += vsnprintf(line + len, sizeof(line) - len, fmt, ap);
		va_end(ap);
	}
	if (len >= (int)sizeof(line) - 1)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	snprintf(tmp, sizeof(tmp), "%s.tmp", zoo_state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, len) == len)
		rename(tmp, zoo_state_path);
	close(fd);
}

static inline uint64_t zoo_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void zoo_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* FNV-1a over 64-bit words (size a multiple of 8): the checksum tests recompute from outside. */
static inline uint64_t zoo_fnv(const void *data, size_t size)
{
	const unsigned char *p = data;
	uint64_t h = 1469598103934665603ULL, w;
	size_t i;

	for (i = 0; i + 8 <= size; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 1099511628211ULL;
	}
	return h;
}

/* A deterministic pattern: block `n` of content seeded by `seed` (xorshift). */
static inline void zoo_pattern(void *data, size_t size, uint64_t seed, uint64_t n)
{
	uint64_t x = (seed ^ (n * 0x9e3779b97f4a7c15ULL)) | 1, w;
	unsigned char *p = data;
	size_t i;

	for (i = 0; i + 8 <= size; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w = x;
		memcpy(p + i, &w, 8);
	}
}

/* read()/write() until all `size` bytes moved: 0 on success, -1 on error or end of file. */
static inline int zoo_read_full(int fd, void *buf, size_t size)
{
	size_t done = 0;
	ssize_t n;

	while (done < size) {
		n = read(fd, (char *)buf + done, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += n;
	}
	return 0;
}

static inline int zoo_write_full(int fd, const void *buf, size_t size)
{
	size_t done = 0;
	ssize_t n;

	while (done < size) {
		n = write(fd, (const char *)buf + done, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += n;
	}
	return 0;
}

#endif
