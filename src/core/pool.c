/* pool.c - a small thread pool: one job at a time, the caller is thread 0,
 * workers spin briefly between jobs and then sleep on a condition variable. */
#include "nn.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How long a worker spins for the next job before it sleeps, and how long a
 * waiter spins before it yields the processor (in pause instructions). */
#define SPIN_BEFORE_SLEEP 10000
#define SPIN_BEFORE_YIELD 4000

typedef struct {
    _Alignas(64) int sense; /* this thread's barrier sense */
} thread_slot;

struct nn_pool {
    int n;
    pthread_t *threads;
    thread_slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nn_pool_fn fn;
    void *arg;
    _Alignas(64) atomic_ulong generation; /* bumped once per job */
    _Alignas(64) atomic_int remaining;    /* workers still in the job */
    _Alignas(64) atomic_int sleepers;
    atomic_int stop;
    _Alignas(64) atomic_int bar_count;
    _Alignas(64) atomic_int bar_sense;
};

typedef struct {
    nn_pool *pool;
    int tid;
} worker_arg;

static void wait_spin(int *spins) {
    if (++*spins < SPIN_BEFORE_YIELD)
        cpu_relax();
    else
        sched_yield();
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    nn_pool *pool = wa.pool;
    unsigned long seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop) &&
               spins < SPIN_BEFORE_SLEEP) {
            spins++;
            cpu_relax();
        }
        if (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop)) {
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = atomic_load(&pool->generation);
        pool->fn(pool->arg, wa.tid, pool->n);
        atomic_fetch_sub(&pool->remaining, 1);
    }
}

nn_pool *nn_pool_create(int nthreads) {
    if (nthreads < 1)
        nthreads = 1;
    nn_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->n = nthreads;
    pool->threads = calloc((size_t)nthreads, sizeof *pool->threads);
    pool->slots = aligned_alloc(64, sizeof(thread_slot) * (size_t)nthreads);
    if (!pool->threads || !pool->slots) {
        free(pool->threads);
        free(pool->slots);
        free(pool);
        return NULL;
    }
    for (int i = 0; i < nthreads; i++)
        pool->slots[i].sense = 0;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (wa->pool = pool, wa->tid = i,
                    pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0)) {
            free(wa);
            pool->n = i; /* free() joins the ones started */
            nn_pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void nn_pool_free(nn_pool *pool) {
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool->slots);
    free(pool);
}

int nn_pool_size(const nn_pool *pool) { return pool ? pool->n : 1; }

void nn_pool_run(nn_pool *pool, nn_pool_fn fn, void *arg) {
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->remaining, pool->n - 1);
    atomic_fetch_add(&pool->generation, 1);
    /* A worker about to sleep registers first, then re-checks the
     * generation under the mutex; so either it sees the new job or we see
     * it sleeping and wake it. */
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, pool->n);
    int spins = 0;
    while (atomic_load(&pool->remaining) > 0)
        wait_spin(&spins);
}

void nn_pool_barrier(nn_pool *pool, int tid, int nthreads) {
    if (!pool || nthreads == 1)
        return;
    int sense = pool->slots[tid].sense ^= 1;
    if (atomic_fetch_add(&pool->bar_count, 1) == pool->n - 1) {
        atomic_store(&pool->bar_count, 0);
        atomic_store(&pool->bar_sense, sense);
    } else {
        int spins = 0;
        while (atomic_load(&pool->bar_sense) != sense)
            wait_spin(&spins);
    }
}

void nn_split(int n, int align, int tid, int nthreads, int *lo, int *hi) {
    if (align < 1)
        align = 1;
    int blocks = (n + align - 1) / align;
    int b0 = (int)((long)blocks * tid / nthreads);
    int b1 = (int)((long)blocks * (tid + 1) / nthreads);
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}
