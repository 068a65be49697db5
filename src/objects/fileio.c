/* fileio.c - the one whole-file reader and the one atomic file writer of the
 * library (model files, checkpoints, data) and of the program (plots). */
#define _XOPEN_SOURCE 700 /* realpath, with POSIX 2008 */

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Paths in messages are cut so that the reason after them still fits. */
#define PATH_FMT "%.300s"

lstm_status lstm_read_file(const char *path, char **buf, size_t *len, lstm_error *err) {
    *buf = NULL;
    *len = 0;
    if (!path)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_read_file: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": is a directory, not a file", path);
    }
    /* A regular file is read in one go (+1 to see the end, and for the
     * NUL); what has no size (a pipe, a terminal) grows the buffer. */
    size_t cap = (size_t)1 << 16;
    if (S_ISREG(sb.st_mode) && sb.st_size >= 0 && (uintmax_t)sb.st_size < SIZE_MAX - 1)
        cap = (size_t)sb.st_size + 2;
    size_t n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) {
            close(fd);
            return lstm_fail(err, LSTM_ERR_NOMEM, PATH_FMT ": out of memory reading %zu bytes",
                             path, cap);
        }
        if (n + 1 == cap) { /* full but for the NUL */
            char *bigger = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
            if (!bigger)
                free(b);
            b = bigger;
            cap *= 2;
            continue;
        }
        ssize_t got = read(fd, b + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            free(b);
            close(fd);
            return lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": read error at offset %zu: %s", path,
                             n, strerror(e));
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    *len = n;
    return lstm_ok(err);
}

/* write(2) until all n bytes are written; -1 with errno on failure. */
static int write_all(int fd, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_parts(int fd, const lstm_file_part *parts, size_t nparts) {
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len && write_all(fd, parts[i].data, parts[i].len) != 0)
            return -1;
    return 0;
}

/* The folder holding `file` ("." for a bare name), malloc'd; NULL when out
 * of memory. */
static char *dir_of(const char *file) {
    const char *slash = strrchr(file, '/');
    size_t n = !slash ? 1 : slash == file ? 1 : (size_t)(slash - file);
    char *dir = malloc(n + 1);
    if (dir) {
        memcpy(dir, slash ? file : ".", n);
        dir[n] = 0;
    }
    return dir;
}

/* When process pid started, in clock ticks after boot (field 22 of
 * /proc/PID/stat), or 0 when that cannot be read (no /proc, no such
 * process). A PID is reused once processes wrap around pid_max (32768
 * here); a PID and its start time name one process. */
static unsigned long long proc_start(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Creates path + ".tmp.PID-START.XXXXXX" with O_EXCL. Unlike mkstemp
 * (mode 0600) the file gets 0666 less the umask, as a plain fopen would
 * give the result. The process's PID and start time in the name let a
 * later save tell a temporary file left by a killed process (remove_stale)
 * from one being written right now. */
static int create_temp(const char *path, char *tmp, size_t size) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                 ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)tmp;
    unsigned long long start = proc_start((long)getpid());
    for (int attempt = 0; attempt < 100; attempt++) {
        /* splitmix64 step: a different name on each try */
        x += 0x9e3779b97f4a7c15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        snprintf(tmp, size, "%s.tmp.%ld-%llu.%06llx", path, (long)getpid(), start,
                 (unsigned long long)(z & 0xffffff));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* Removes the temporary files of earlier saves of `file` that a process
 * killed while writing left behind (kill -9 gives it no chance to clean
 * up): FILE.tmp.PID-START.XXXXXX when no process of that PID and start time
 * runs, and FILE.tmp.XXXXXX (the names before the PID was in them) older
 * than ten minutes. Best effort: failures are ignored. A process on another
 * machine sharing the folder is not told apart. */
static void remove_stale(const char *file) {
    char *dir = dir_of(file);
    if (!dir)
        return;
    const char *fs = strrchr(file, '/'), *base = fs ? fs + 1 : file;
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (strncmp(nm, base, blen) != 0 || strncmp(nm + blen, ".tmp.", 5) != 0)
            continue;
        const char *rest = nm + blen + 5;
        char *end;
        long pid = strtol(rest, &end, 10);
        int stale = 0;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, nm) >= (int)sizeof path)
            continue;
        unsigned long long start = 0;
        if (end > rest && *end == '-')
            start = strtoull(end + 1, &end, 10);
        if (end > rest && *end == '.' && strlen(end + 1) == 6) {
            int gone = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
            /* the PID now names another process (it wrapped around) */
            int reused = !gone && start && proc_start(pid) != start;
            stale = pid > 0 && pid != (long)getpid() && (gone || reused);
        } else if (strlen(rest) == 6 && strspn(rest, "0123456789abcdef") == 6) {
            struct stat sb;
            stale = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && time(NULL) - sb.st_mtime > 600;
        }
        if (stale)
            unlink(path);
    }
    if (d)
        closedir(d);
    free(dir);
}

/* What exists and is neither a regular file nor a directory (a pipe, a
 * terminal, /dev/null) is written in place: a rename would replace it. */
static lstm_status write_in_place(const char *path, const lstm_file_part *parts, size_t nparts,
                                  lstm_error *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    int ok = fd >= 0 && write_parts(fd, parts, nparts) == 0;
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        e = errno;
        ok = 0;
    }
    if (!ok)
        return lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": cannot write: %s", path, strerror(e));
    return lstm_ok(err);
}

/* fsyncs the directory holding `file`, so that a rename into it is durable. */
static lstm_status sync_dir(const char *path, const char *file, lstm_error *err) {
    char *dir = dir_of(file);
    if (!dir)
        return lstm_fail(err, LSTM_ERR_NOMEM,
                         PATH_FMT ": saved, but out of memory syncing its directory", path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int bad = dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL);
    int e = errno;
    if (dfd >= 0)
        close(dfd);
    lstm_status s = LSTM_OK;
    if (bad)
        s = lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": saved, but syncing directory %.200s failed: %s",
                      path, dir, strerror(e));
    free(dir);
    return s ? s : lstm_ok(err);
}

lstm_status lstm_write_file_parts(const char *path, const lstm_file_part *parts, size_t nparts,
                                  lstm_error *err) {
    if (!path || !*path || (nparts && !parts))
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_write_file_atomic: NULL argument or empty path");
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len && !parts[i].data)
            return lstm_fail(err, LSTM_ERR_INVALID, PATH_FMT ": part %zu of the data is NULL",
                             path, i);
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
        return write_in_place(path, parts, nparts, err);
    /* A symbolic link stays, and the file it names is replaced (a dangling
     * one is replaced itself: there is nothing else to replace). */
    char *real = NULL;
    if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode))
        real = realpath(path, NULL);
    const char *file = real ? real : path;
    remove_stale(file);
    size_t tsize = strlen(file) + 64;
    char *tmp = malloc(tsize);
    if (!tmp) {
        free(real);
        return lstm_fail(err, LSTM_ERR_NOMEM, PATH_FMT ": out of memory", path);
    }
    int fd = create_temp(file, tmp, tsize);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        free(real);
        return lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": cannot create a file there: %s", path,
                         strerror(e));
    }
    const char *what = "write";
    int ok = write_parts(fd, parts, nparts) == 0;
    if (ok && fsync(fd) != 0) {
        what = "fsync";
        ok = 0;
    }
    int e = errno;
    if (close(fd) != 0 && ok) {
        e = errno;
        what = "close";
        ok = 0;
    }
    if (ok && rename(tmp, file) != 0) {
        e = errno;
        what = "rename the temporary file over";
        ok = 0;
    }
    if (!ok)
        unlink(tmp);
    free(tmp);
    lstm_status s;
    if (!ok)
        s = lstm_fail(err, LSTM_ERR_IO, PATH_FMT ": cannot %s it: %s (file left untouched)", path,
                      what, strerror(e));
    else
        s = sync_dir(path, file, err);
    free(real);
    return s;
}

lstm_status lstm_write_file_atomic(const char *path, const void *buf, size_t len,
                                   lstm_error *err) {
    lstm_file_part part = {buf, len};
    return lstm_write_file_parts(path, &part, 1, err);
}
