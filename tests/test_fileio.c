/*
 * test_fileio.c - the library's one atomic writer (lstm_write_file_atomic,
 * public) and one whole-file reader (lstm_read_file, internal): contents,
 * modes, symbolic links, files that are not regular, and each failure
 * leaving the old file and no temporary file behind, with a message naming
 * the path.
 */
#include "check.h"
#include "internal.h"
#include "lstm.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

/* tmpdir/name in one of four rotating buffers. */
static const char *tmp_path(const char *name) {
    static char buf[4][sizeof tmpdir + 1 + 256]; /* + a d_name */
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

static int contains(const char *s, const char *needle) { return strstr(s, needle) != NULL; }

/* Temporary files left in tmpdir (their names have ".tmp."). */
static int temp_files_left(void) {
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)))
        n += strstr(de->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static int file_equals(const char *path, const void *want, size_t len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    unsigned char *b = malloc(len + 1);
    size_t got = fread(b, 1, len + 1, f);
    fclose(f);
    int same = got == len && (len == 0 || memcmp(b, want, len) == 0);
    free(b);
    return same;
}

static void put_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_write(void) {
    lstm_error err;
    const char *a = tmp_path("a.bin");
    const char text[] = "first\0bytes";
    CHECK(lstm_write_file_atomic(a, text, sizeof text, &err) == LSTM_OK && err.status == LSTM_OK,
          "write: %s", err.msg);
    CHECK(file_equals(a, text, sizeof text), "the bytes, NUL included");
    CHECK(lstm_write_file_atomic(a, "second", 6, &err) == LSTM_OK, "replace: %s", err.msg);
    CHECK(file_equals(a, "second", 6), "replaced");
    CHECK(lstm_write_file_atomic(a, NULL, 0, &err) == LSTM_OK && file_equals(a, "", 0),
          "an empty file: %s", err.msg);

    /* mode: 0666 less the umask, new or replaced */
    mode_t old = umask(022);
    struct stat sb;
    CHECK(lstm_write_file_atomic(a, "x", 1, &err) == LSTM_OK && stat(a, &sb) == 0 &&
              (sb.st_mode & 0777) == 0644,
          "umask 022 gives 0644 (got %o)", (unsigned)(sb.st_mode & 0777));
    umask(077);
    const char *b = tmp_path("b.bin");
    CHECK(lstm_write_file_atomic(b, "x", 1, &err) == LSTM_OK && stat(b, &sb) == 0 &&
              (sb.st_mode & 0777) == 0600,
          "umask 077 gives 0600 (got %o)", (unsigned)(sb.st_mode & 0777));
    umask(old);

    /* a symbolic link stays and its target gets the bytes */
    const char *target = tmp_path("target.bin"), *link = tmp_path("link.bin");
    put_file(target, "old");
    CHECK(symlink("target.bin", link) == 0, "symlink: %s", strerror(errno));
    CHECK(lstm_write_file_atomic(link, "new", 3, &err) == LSTM_OK, "through a link: %s",
          err.msg);
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode) && file_equals(target, "new", 3),
          "the link stays, the file it names is replaced");
    /* a dangling link is replaced by the file */
    const char *dangling = tmp_path("dangling.bin");
    CHECK(symlink("nowhere/x", dangling) == 0, "symlink: %s", strerror(errno));
    CHECK(lstm_write_file_atomic(dangling, "d", 1, &err) == LSTM_OK && lstat(dangling, &sb) == 0 &&
              S_ISREG(sb.st_mode) && file_equals(dangling, "d", 1),
          "a dangling link is replaced: %s", err.msg);

    /* not a regular file: written in place, not replaced */
    CHECK(lstm_write_file_atomic("/dev/null", "abc", 3, &err) == LSTM_OK &&
              stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode),
          "/dev/null is written in place: %s", err.msg);

    /* a relative path: the directory is "." */
    char cwd[512];
    if (getcwd(cwd, sizeof cwd) && chdir(tmpdir) == 0) {
        CHECK(lstm_write_file_atomic("relative.bin", "r", 1, &err) == LSTM_OK, "relative: %s",
              err.msg);
        CHECK(file_equals("relative.bin", "r", 1), "relative: the bytes");
        CHECK(chdir(cwd) == 0, "chdir back");
    }
    CHECK(temp_files_left() == 0, "temporary files left behind");
}

static void test_write_failures(void) {
    lstm_error err;
    CHECK(lstm_write_file_atomic(NULL, "x", 1, &err) == LSTM_ERR_INVALID, "NULL path: %s",
          err.msg);
    CHECK(lstm_write_file_atomic("", "x", 1, &err) == LSTM_ERR_INVALID, "empty path: %s",
          err.msg);
    CHECK(lstm_write_file_atomic(tmp_path("n.bin"), NULL, 1, &err) == LSTM_ERR_INVALID &&
              access(tmp_path("n.bin"), F_OK) != 0,
          "NULL buffer with bytes: %s", err.msg);

    const char *nodir = tmp_path("no/such/dir/x.bin");
    CHECK(lstm_write_file_atomic(nodir, "x", 1, &err) == LSTM_ERR_IO && contains(err.msg, nodir) &&
              contains(err.msg, "cannot create a file there: No such file or directory"),
          "into a missing directory: %s", err.msg);

    const char *adir = tmp_path("adir");
    mkdir(adir, 0755);
    struct stat sb;
    CHECK(lstm_write_file_atomic(adir, "x", 1, &err) == LSTM_ERR_IO && contains(err.msg, adir) &&
              contains(err.msg, "rename") && contains(err.msg, "untouched"),
          "over a directory: %s", err.msg);
    CHECK(stat(adir, &sb) == 0 && S_ISDIR(sb.st_mode), "the directory stays");

    /* failing mid-write (the file size limit): the old file is untouched */
    const char *keep = tmp_path("keep.bin");
    put_file(keep, "keep me");
    size_t n = 1 << 16;
    char *big = calloc(n, 1);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        lstm_status s = lstm_write_file_atomic(keep, big, n, &err);
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK(s == LSTM_ERR_IO && contains(err.msg, keep) && contains(err.msg, "File too large") &&
                  contains(err.msg, "untouched"),
              "past the file size limit: %s", err.msg);
    }
    signal(SIGXFSZ, prev);
    free(big);
    CHECK(file_equals(keep, "keep me", 7), "a failed write changed the file");
    CHECK(temp_files_left() == 0, "temporary files left behind");
}

static void test_read(void) {
    lstm_error err;
    char *buf = (char *)1;
    size_t len = 7;
    const char *a = tmp_path("read.bin");
    const char text[] = "ab\0cd";
    CHECK(lstm_write_file_atomic(a, text, 5, &err) == LSTM_OK, "%s", err.msg);
    CHECK(lstm_read_file(a, &buf, &len, &err) == LSTM_OK && len == 5 &&
              memcmp(buf, text, 5) == 0 && buf[5] == 0,
          "read back, NUL-terminated: %s", err.msg);
    free(buf);

    CHECK(lstm_write_file_atomic(a, NULL, 0, &err) == LSTM_OK, "%s", err.msg);
    CHECK(lstm_read_file(a, &buf, &len, &err) == LSTM_OK && len == 0 && buf && buf[0] == 0,
          "an empty file is an empty string: %s", err.msg);
    free(buf);

    /* larger than the first guess for files without a size */
    size_t n = 300000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    CHECK(lstm_write_file_atomic(a, big, n, &err) == LSTM_OK, "%s", err.msg);
    CHECK(lstm_read_file(a, &buf, &len, &err) == LSTM_OK && len == n &&
              memcmp(buf, big, n) == 0 && buf[n] == 0,
          "a large file: %s", err.msg);
    free(buf);
    free(big);

    /* a file whose size stat does not know (procfs): read to its end */
    if (access("/proc/self/maps", R_OK) == 0) {
        CHECK(lstm_read_file("/proc/self/maps", &buf, &len, &err) == LSTM_OK && len > 0 &&
                  strlen(buf) == len,
              "/proc/self/maps: %s", err.msg);
        free(buf);
    }

    const char *missing = tmp_path("missing.bin");
    CHECK(lstm_read_file(missing, &buf, &len, &err) == LSTM_ERR_IO && !buf && len == 0 &&
              contains(err.msg, missing) &&
              contains(err.msg, "cannot open: No such file or directory"),
          "a missing file: %s", err.msg);
    CHECK(lstm_read_file(tmpdir, &buf, &len, &err) == LSTM_ERR_IO && !buf &&
              contains(err.msg, tmpdir) && contains(err.msg, "is a directory"),
          "a directory: %s", err.msg);
    CHECK(lstm_read_file(NULL, &buf, &len, &err) == LSTM_ERR_INVALID, "NULL path: %s", err.msg);
}

/* When process pid started (field 22 of /proc/PID/stat), or 0. */
static unsigned long long start_of(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* A save removes the temporary files that killed writers left beside its
 * file, and only those: a live writer's survives. */
static void test_stale_temporaries(void) {
    long parent = (long)getppid();
    unsigned long long ps = start_of(parent);
    if (!ps) {
        printf("ok skipping the temporary-file names: no /proc\n");
        return;
    }
    char live[128], reused[128], dead[128], old[128], young[128], other[128];
    snprintf(live, sizeof live, "%s.tmp.%ld-%llu.a1b2c3", tmp_path("t.bin"), parent, ps);
    snprintf(reused, sizeof reused, "%s.tmp.%ld-%llu.a1b2c3", tmp_path("t.bin"), parent, ps + 1);
    /* a PID no process has: above the kernel's largest (4194304 on 64-bit) */
    snprintf(dead, sizeof dead, "%s.tmp.%ld-%llu.a1b2c3", tmp_path("t.bin"), 4999999L, ps);
    snprintf(old, sizeof old, "%s.tmp.0a1b2c", tmp_path("t.bin"));
    snprintf(young, sizeof young, "%s.tmp.0d1e2f", tmp_path("t.bin"));
    snprintf(other, sizeof other, "%s.tmp.%ld-%llu.a1b2c3", tmp_path("u.bin"), 4999999L, ps);
    const char *all[] = {live, reused, dead, old, young, other};
    for (int i = 0; i < 6; i++)
        put_file(all[i], "x");
    struct timespec times[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    utimensat(AT_FDCWD, old, times, 0);
    lstm_error err;
    CHECK(lstm_write_file_atomic(tmp_path("t.bin"), "data", 4, &err) == LSTM_OK, "save: %s",
          err.msg);
    CHECK(exists(live), "a live writer's temporary file survives a save");
    CHECK(!exists(reused), "one whose PID now names another process (start time) is removed");
    CHECK(!exists(dead), "one whose writer is gone is removed");
    CHECK(!exists(old), "an old-style name older than ten minutes is removed");
    CHECK(exists(young), "a recent old-style name survives");
    CHECK(exists(other), "another file's temporaries are not touched");
    for (int i = 0; i < 6; i++)
        unlink(all[i]);
}

/* Removes what the tests left in tmpdir (files, links, the one folder),
 * whatever their names, then tmpdir itself. */
static void cleanup(void) {
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            unlink(tmp_path(e->d_name)) != 0)
            rmdir(tmp_path(e->d_name));
    if (d)
        closedir(d);
    CHECK(rmdir(tmpdir) == 0, "%s removed, empty: %s", tmpdir, strerror(errno));
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_fileio.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_write();
    test_write_failures();
    test_read();
    test_stale_temporaries();
    cleanup();
    return check_summary();
}
