/*
 * threads: one process, several threads, each with its own state on its own stack.
 *
 *   threads [--state PATH] [--interval-ms N] [--threads N]
 *
 * Workers count under a shared mutex and each checks a 16 KiB block on its own stack that it
 * filled from its thread id; a waiter sleeps in a condition variable (a futex) that the main
 * thread signals every tick. The main thread checks that the shared total is the sum of the
 * workers' counts, and that the waiter woke within 20 ticks of a ring. State words:
 *   threads=N tids=T1,T2,.. counts=C1,C2,.. total=N wakeups=N
 * A restore must bring back every thread with its tid, stack and place in the futex.
 */
#include "zoo.h"

#include <pthread.h>
#include <sys/syscall.h>

#define MAX_THREADS 16
#define STACK_BLOCK 16384

struct worker {
	pthread_t thread;
	volatile pid_t tid;
	volatile uint64_t count;
};

static struct worker workers[MAX_THREADS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bell = PTHREAD_COND_INITIALIZER;
static uint64_t total, rings, wakeups;

static void *work(void *arg)
{
	struct worker *self = arg;
	unsigned char block[STACK_BLOCK], fresh[STACK_BLOCK];
	uint64_t n;

	self->tid = syscall(SYS_gettid);
	zoo_pattern(block, sizeof(block), (uint64_t)self->tid, 1);
	for (n = 0;; n++) {
		if (n % 64 == 0) {
			zoo_pattern(fresh, sizeof(fresh), (uint64_t)syscall(SYS_gettid), 1);
			if (memcmp(fresh, block, sizeof(block)))
				zoo_fail("stack");
		}
		pthread_mutex_lock(&lock);
		self->count++;
		total++;
		pthread_mutex_unlock(&lock);
		zoo_sleep_ms(2);
	}
	return NULL;
}

static void *wait_for_bell(void *arg)
{
	uint64_t seen = 0;

	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		while (rings == seen)
			pthread_cond_wait(&bell, &lock);
		seen = rings;
		wakeups++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long interval = zoo_arg_long(argc, argv, "--interval-ms", 100);
	int nthreads = zoo_arg_long(argc, argv, "--threads", 4), i;
	uint64_t nonce, ticks = 0, unheard = 0;
	pthread_t waiter;

	zoo_start(argc, argv);
	nonce = zoo_nonce();
	if (nthreads < 1 || nthreads > MAX_THREADS)
		nthreads = 4;
	for (i = 0; i < nthreads; i++)
		pthread_create(&workers[i].thread, NULL, work, &workers[i]);
	pthread_create(&waiter, NULL, wait_for_bell, NULL);

	for (;;) {
		char tids[256] = "", counts[512] = "";
		uint64_t sum = 0, woken;
		int tl = 0, cl = 0;

		zoo_sleep_ms(interval);
		pthread_mutex_lock(&lock);
		for (i = 0; i < nthreads; i++) {
			sum += workers[i].count;
			tl += snprintf(tids + tl, sizeof(tids) - tl, "%s%d", i ? "," : "", workers[i].tid);
			cl += snprintf(counts + cl, sizeof(counts) - cl, "%s%llu", i ? "," : "",
				       (unsigned long long)workers[i].count);
		}
		if (sum != total)
			zoo_fail("total");
		woken = wakeups;
		if (rings == woken) {	/* the last ring was heard: ring again */
			rings++;
			unheard = 0;
		} else if (++unheard > 20) {
			zoo_fail("waiter");	/* the waiter has slept through 20 ticks */
		}
		pthread_cond_signal(&bell);
		pthread_mutex_unlock(&lock);
		zoo_state(nonce, ++ticks, "threads=%d tids=%s counts=%s total=%llu wakeups=%llu", nthreads, tids,
			  counts, (unsigned long long)sum, (unsigned long long)woken);
	}
}
