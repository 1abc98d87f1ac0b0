/*
 * iouring: a process that holds an io_uring instance, which CRIU cannot checkpoint.
 *
 *   iouring [--state PATH] [--interval-ms N]
 *
 * Sets up a small io_uring (raw syscall: no liburing needed) and submits a no-op through it
 * every tick, counting completions. CRIU has no support for io_uring descriptors: a save must
 * fail and name the descriptor, and the container must go on running.
 * State words: fd=N completed=N
 */
#include "zoo.h"

#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	struct io_uring_params p = { 0 };
	uint64_t nonce, ticks = 0, completed = 0;
	unsigned char *sq, *cq;
	struct io_uring_sqe *sqes;
	int ring;

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	ring = syscall(__NR_io_uring_setup, 4, &p);
	if (ring < 0)
		return 1;
	sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned), PROT_READ | PROT_WRITE, MAP_SHARED,
		  ring, IORING_OFF_SQ_RING);
	cq = mmap(NULL, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE,
		  MAP_SHARED, ring, IORING_OFF_CQ_RING);
	sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED, ring,
		    IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		return 1;

	for (;;) {
		unsigned *sq_tail = (unsigned *)(sq + p.sq_off.tail), *sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
		unsigned *array = (unsigned *)(sq + p.sq_off.array);
		unsigned *cq_head = (unsigned *)(cq + p.cq_off.head), *cq_tail = (unsigned *)(cq + p.cq_off.tail);
		unsigned tail = *sq_tail, index = tail & *sq_mask;

		memset(&sqes[index], 0, sizeof(sqes[index]));
		sqes[index].opcode = IORING_OP_NOP;
		array[index] = index;
		__atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
		if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
			zoo_fail("enter");
		while (*cq_head != __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE)) {
			completed++;
			__atomic_store_n(cq_head, *cq_head + 1, __ATOMIC_RELEASE);
		}
		zoo_state(nonce, ++ticks, "fd=%d completed=%llu", ring, (unsigned long long)completed);
		zoo_sleep_ms(interval);
	}
}
