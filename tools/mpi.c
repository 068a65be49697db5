/* mpi.c - the lstm program's side of data-parallel training: an lstm_comm
 * filled with MPI's allreduce (Open MPI in Debian: make MPI=1, or found by
 * pkg-config), and the launch check without MPI. The library knows no
 * transport; only this file includes mpi.h. */
#include "cli.h"

#include <limits.h>
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

int cli_comm_start(lstm_comm *comm, int *argc, char ***argv) {
    if (cli_launched_ranks() <= 1)
        return 0; /* one process: no MPI at all */
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return -1;
    /* an MPI error ends the job (the default), never hangs it */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &comm->size);
    comm->arg = NULL;
    comm->allreduce_float = allreduce_float;
    comm->allreduce_double = allreduce_double;
    return 1;
}

void cli_comm_end(const lstm_comm *comm) {
    int started = 0, ended = 0;
    (void)comm;
    MPI_Initialized(&started);
    MPI_Finalized(&ended);
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
