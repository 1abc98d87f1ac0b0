/*
 * deleted: a file removed from the file system while it is still open, and written on.
 *
 *   deleted [--state PATH] [--interval-ms N] [--path PATH] [--kib N]
 *
 * Creates PATH (default /tmp/zoo-deleted, N KiB, default 256), fills it from the nonce, unlinks
 * it and keeps the descriptor. Every tick it overwrites one 4 KiB block with new content, keeps
 * a copy of what the file must hold in memory, reads the whole file back through the descriptor
 * and compares. A checkpoint must carry the file's content (CRIU's "ghost file"); CRIU refuses
 * ghost files above its --ghost-limit (1 MiB by default), which a large N shows.
 * State words: fd=N size=N sum=<FNV-1a of the content, as tests recompute it> path=PATH
 */
#include "zoo.h"

#define BLOCK 4096

int main(int argc, char **argv)
{
	const char *path = zoo_arg(argc, argv, "--path", "/tmp/zoo-deleted");
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	size_t size = (size_t)zoo_arg_long(argc, argv, "--kib", 256) << 10;
	unsigned char *shadow, *back;
	uint64_t nonce, ticks = 0, sum;
	int fd;

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	shadow = malloc(size);
	back = malloc(size);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!shadow || !back || fd < 0 || size < BLOCK)
		return 1;
	zoo_pattern(shadow, size, nonce, 0);
	if (pwrite(fd, shadow, size, 0) != (ssize_t)size || unlink(path) != 0)
		return 1;

	for (;;) {
		size_t at = (ticks % (size / BLOCK)) * BLOCK;

		zoo_pattern(shadow + at, BLOCK, nonce, ticks + 1);
		if (pwrite(fd, shadow + at, BLOCK, at) != BLOCK)
			zoo_fail("write");
		if (pread(fd, back, size, 0) != (ssize_t)size || memcmp(back, shadow, size))
			zoo_fail("content");
		sum = zoo_fnv(shadow, size);
		zoo_state(nonce, ++ticks, "fd=%d size=%zu sum=%016llx path=%s", fd, size, (unsigned long long)sum,
			  path);
		zoo_sleep_ms(interval);
	}
}
