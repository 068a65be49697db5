/* mpi.c - the lstm program's side of data-parallel training: an lstm_comm
 * filled with MPI's allreduce (Open MPI in Debian: make MPI=1, or found by
 * pkg-config), and the launch check without MPI. The library knows no
 * transport; only this file includes mpi.h. */
#include "cli.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* The number of processes the launcher (mpirun, srun) started, from the
 * environment it gives them; 1 when not launched so. */
int cli_launched_ranks(void) {
    /* the launcher's per-process variables (Open MPI, MPICH/Hydra, PMIx);
     * not SLURM_NTASKS, which a whole batch allocation sees */
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1)
            return atoi(v);
    }
    return 1;
}

#ifdef LSTM_HAVE_MPI
#include <mpi.h>

/* MPI counts in int: a long buffer goes in pieces. */
static int allreduce(void *buf, size_t n, MPI_Datatype type, size_t size) {
    for (size_t at = 0; at < n;) {
        int k = n - at > (size_t)INT_MAX ? INT_MAX : (int)(n - at);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * size, k, type, MPI_SUM,
                          MPI_COMM_WORLD) != MPI_SUCCESS)
            return -1;
        at += (size_t)k;
    }
    return 0;
}

static int allreduce_float(float *buf, size_t n, void *arg) {
    (void)arg;
    return allreduce(buf, n, MPI_FLOAT, sizeof(float));
}

static int allreduce_double(double *buf, size_t n, void *arg) {
    (void)arg;
    return allreduce(buf, n, MPI_DOUBLE, sizeof(double));
}

/* The sums run during the backward: a thread of the program's own takes
 * the buckets lstm_train starts, in order, and sums each with a blocking
 * MPI_Allreduce, while the training thread goes on with the backward (as
 * PyTorch's MPI process group and Horovod do: Open MPI moves a nonblocking
 * collective on only inside MPI calls, and the backward makes none). MPI
 * runs at MPI_THREAD_SERIALIZED: the training thread calls MPI only after
 * wait_all, when this thread is idle. One job per process, so the queue is
 * the program's, at file scope. */
typedef struct {
    float *buf;
    size_t n;
} bucket;

static struct {
    pthread_t thread;
    int running; /* the thread exists */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bucket *q;
    int cap, head, tail; /* q[head..tail) waits; reset by wait_all */
    int busy, quit, failed;
} cq = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *comm_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cq.mu);
    for (;;) {
        while (cq.head == cq.tail && !cq.quit)
            pthread_cond_wait(&cq.cv, &cq.mu);
        if (cq.head == cq.tail)
            break; /* quit, nothing left */
        bucket b = cq.q[cq.head];
        cq.busy = 1;
        pthread_mutex_unlock(&cq.mu);
        int bad = allreduce(b.buf, b.n, MPI_FLOAT, sizeof(float));
        pthread_mutex_lock(&cq.mu);
        cq.head++;
        cq.busy = 0;
        cq.failed |= bad;
        pthread_cond_broadcast(&cq.cv);
    }
    pthread_mutex_unlock(&cq.mu);
    return NULL;
}

static int start_allreduce_float(float *buf, size_t n, void *arg) {
    (void)arg;
    pthread_mutex_lock(&cq.mu);
    int bad = 0;
    if (!cq.running) {
        cq.quit = 0;
        bad = pthread_create(&cq.thread, NULL, comm_thread, NULL) != 0;
        cq.running = !bad;
    }
    if (!bad && cq.tail == cq.cap) {
        int cap = cq.cap ? 2 * cq.cap : 32;
        bucket *q = realloc(cq.q, sizeof *q * (size_t)cap);
        if (q)
            cq.q = q, cq.cap = cap;
        else
            bad = 1;
    }
    if (!bad) {
        cq.q[cq.tail++] = (bucket){buf, n};
        pthread_cond_broadcast(&cq.cv);
    }
    pthread_mutex_unlock(&cq.mu);
    return bad;
}

/* The thread moves the sums on by itself. */
static int progress(void *arg) {
    (void)arg;
    return 0;
}

static int wait_all(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cq.mu);
    while (cq.head != cq.tail || cq.busy)
        pthread_cond_wait(&cq.cv, &cq.mu);
    int bad = cq.failed;
    cq.head = cq.tail = cq.failed = 0;
    pthread_mutex_unlock(&cq.mu);
    return bad;
}

static void stop_thread(void) {
    pthread_mutex_lock(&cq.mu);
    int running = cq.running;
    cq.quit = 1;
    pthread_cond_broadcast(&cq.cv);
    pthread_mutex_unlock(&cq.mu);
    if (running)
        pthread_join(cq.thread, NULL);
    cq.running = 0;
    free(cq.q);
    cq.q = NULL, cq.cap = cq.head = cq.tail = 0;
}

int cli_comm_start(lstm_comm *comm, int *argc, char ***argv) {
    if (cli_launched_ranks() <= 1)
        return 0; /* one process: no MPI at all */
    int provided;
    /* The sums' thread waits inside MPI_Allreduce, which Open MPI spins in;
     * beside the training threads on the same cores that spinning takes
     * their cycles (lm, 2 ranks on 2 cores: 12.1k tokens/s against 15.2k
     * with yielding). Open MPI yields the core when asked to; a value the
     * user set stays. */
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        return -1;
    /* an MPI error ends the job (the default), never hangs it */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &comm->size);
    comm->arg = NULL;
    comm->allreduce_float = allreduce_float;
    comm->allreduce_double = allreduce_double;
    if (provided >= MPI_THREAD_SERIALIZED) { /* else: the sums after the backward */
        comm->start_allreduce_float = start_allreduce_float;
        comm->progress = progress;
        comm->wait_all = wait_all;
    }
    return 1;
}

void cli_comm_end(const lstm_comm *comm) {
    int started = 0, ended = 0;
    (void)comm;
    MPI_Initialized(&started);
    MPI_Finalized(&ended);
    stop_thread();
    if (started && !ended)
        MPI_Finalize();
}

void cli_comm_abort(const lstm_comm *comm, int status) {
    if (comm->size > 1) {
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
}
#else
int cli_comm_start(lstm_comm *comm, int *argc, char ***argv) {
    (void)comm, (void)argc, (void)argv;
    return cli_launched_ranks() > 1 ? -2 : 0;
}
void cli_comm_end(const lstm_comm *comm) { (void)comm; }
void cli_comm_abort(const lstm_comm *comm, int status) { (void)comm, (void)status; }
#endif
