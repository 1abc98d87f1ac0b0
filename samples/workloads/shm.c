/*
 * shm: POSIX shared memory (shm_open, a file in /dev/shm) mapped by two processes.
 *
 *   shm [--state PATH] [--interval-ms N] [--name NAME] [--mib N]
 *
 * The init process creates /dev/shm/NAME (default zoo-shm, 4 MiB), writes a header (magic and
 * nonce) and fills its upper part with content from the nonce. Its child opens the object again
 * by name and maps it on its own: it keeps rewriting a 64 KiB block with content derived from a
 * sequence number, under a sequence lock. The parent, through its own mapping, checks that the
 * block always matches the sequence it reads, that the sequence goes on, and the checksum of the
 * upper part. State words: seq=N static_sum=<hex> name=/dev/shm/NAME size=N
 * File layout (read by tests from outside): u64 magic "zooshm01", u64 nonce, u64 seq, u64 writer.
 */
#include "zoo.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define MAGIC 0x31306d68736f6f7aULL	/* "zooshm01", little-endian */
#define HEADER 4096
#define BLOCK 65536

struct header {
	volatile uint64_t magic, nonce, seq, writer;
};

static unsigned char *map(const char *name, size_t size, int create)
{
	int fd = shm_open(name, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0600);
	void *mem;

	if (fd < 0 || (create && ftruncate(fd, size) != 0))
		return NULL;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);	/* the mapping keeps the object: only the mappings are shared, no descriptor */
	return mem == MAP_FAILED ? NULL : mem;
}

static void writer(const char *name, size_t size, uint64_t nonce)
{
	unsigned char *mem = map(name, size, 0);
	struct header *h = (struct header *)mem;
	uint64_t seq;

	prctl(PR_SET_PDEATHSIG, SIGKILL);	/* outside a container nothing else would end it */
	if (!mem)
		_exit(1);
	h->writer = getpid();
	for (seq = h->seq; ; seq += 2) {
		__atomic_store_n(&h->seq, seq + 1, __ATOMIC_RELEASE);	/* odd: being written */
		zoo_pattern(mem + HEADER, BLOCK, nonce, seq + 2);
		__atomic_store_n(&h->seq, seq + 2, __ATOMIC_RELEASE);
		zoo_sleep_ms(2);
	}
}

int main(int argc, char **argv)
{
	const char *name = zoo_arg(argc, argv, "--name", "zoo-shm");
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	size_t size = (size_t)zoo_arg_long(argc, argv, "--mib", 4) << 20;
	size_t fixed = size / 4;	/* the upper part, filled once */
	static unsigned char block[BLOCK], expect[BLOCK];
	uint64_t nonce, ticks = 0, static_sum, last_seq = 0, seq, again, stalled = 0;
	unsigned char *mem;
	struct header *h;
	char shm_name[128];

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	snprintf(shm_name, sizeof(shm_name), "/%s", name);
	mem = map(shm_name, size, 1);
	if (!mem)
		return 1;
	h = (struct header *)mem;
	h->nonce = nonce;
	h->seq = 0;
	zoo_pattern(mem + size - fixed, fixed, nonce, 0);
	static_sum = zoo_fnv(mem + size - fixed, fixed);
	h->magic = MAGIC;
	if (fork() == 0)
		writer(shm_name, size, nonce);

	for (;;) {
		zoo_sleep_ms(interval);
		do {	/* a consistent copy of the block: same even sequence before and after */
			seq = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
			memcpy(block, mem + HEADER, BLOCK);
			again = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
		} while (seq != again || (seq & 1));
		if (seq > 0) {
			zoo_pattern(expect, BLOCK, nonce, seq);
			if (memcmp(expect, block, BLOCK))
				zoo_fail("block");
		}
		stalled = seq == last_seq ? stalled + 1 : 0;
		if (stalled > 10)
			zoo_fail("writer_stopped");	/* ten ticks without a write */
		if (zoo_fnv(mem + size - fixed, fixed) != static_sum)
			zoo_fail("static");
		if (h->magic != MAGIC || h->nonce != nonce)
			zoo_fail("header");
		last_seq = seq;
		zoo_state(nonce, ++ticks, "seq=%llu static_sum=%016llx name=/dev/shm/%s size=%zu",
			  (unsigned long long)seq, (unsigned long long)static_sum, name, size);
		waitpid(-1, NULL, WNOHANG);
	}
}
