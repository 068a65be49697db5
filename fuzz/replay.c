/* replay.c - runs a fuzz target's LLVMFuzzerTestOneInput on every regular
 * file of the directories (or the files) named on the command line, so the
 * seed corpus is replayed by `make test` without libFuzzer. Ends with the
 * line "N passed, N failed": a crash is the only way an input fails. */
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole file at path into a malloc'd buffer; NULL on failure. */
static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger)
            free(buf);
        buf = bigger;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Replays one file; returns 0 on success, 1 when it cannot be read. */
static int replay(const char *path) {
    size_t len = 0;
    uint8_t *data = read_file(path, &len);
    if (!data) {
        printf("FAIL %s: cannot read\n", path);
        return 1;
    }
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            printf("FAIL %s: not found\n", argv[i]);
            failed++;
            continue;
        }
        if (S_ISREG(sb.st_mode)) {
            int bad = replay(argv[i]);
            passed += !bad;
            failed += bad;
            continue;
        }
        DIR *dir = opendir(argv[i]);
        if (!dir) {
            printf("FAIL %s: cannot open directory\n", argv[i]);
            failed++;
            continue;
        }
        struct dirent *de;
        while ((de = readdir(dir))) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
                continue;
            int bad = replay(path);
            passed += !bad;
            failed += bad;
        }
        closedir(dir);
    }
    if (argc < 2) {
        printf("usage: %s DIR_OR_FILE...\n", argv[0]);
        failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
