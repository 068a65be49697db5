/* test_safetensors.c - the safetensors reader and writer: round trips, the
 * byte layout of Python's save_file, dtype conversions, one test per rule
 * of the format the reader enforces, and atomic saving. */
#define _XOPEN_SOURCE 700

#include "lstm.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* A scratch directory for the file tests, removed at the end. */
static char tmpdir[64];

/* "<tmpdir>/<name>" in a static buffer (one at a time). */
static const char *tmp_path(const char *name) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

/* A safetensors file: the 8-byte length of header (hlen bytes), the header,
 * then dlen data bytes. Caller frees. */
static unsigned char *make_file(const char *header, size_t hlen, const void *data, size_t dlen,
                                size_t *len) {
    *len = 8 + hlen + dlen;
    unsigned char *b = malloc(*len);
    uint64_t n = hlen;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, header, hlen);
    if (dlen)
        memcpy(b + 8 + hlen, data, dlen);
    return b;
}

/* The header string padded with spaces so that 8 + N is a multiple of 8. */
static char *pad_header(const char *json) {
    size_t n = strlen(json), p = (8 - n % 8) % 8;
    char *h = malloc(n + p + 1);
    memcpy(h, json, n);
    memset(h + n, ' ', p);
    h[n + p] = 0;
    return h;
}

static int contains(const char *s, const char *needle) { return strstr(s, needle) != NULL; }

/* Parsing buf must fail with status `want` and a message containing
 * `needle` and the file's name. */
static void expect_fail_(int line, const void *buf, size_t len, lstm_status want,
                         const char *needle) {
    lstm_error err = {0};
    lstm_st *st = lstm_st_from_memory(buf, len, "bad.safetensors", &err);
    CHECK(st == NULL, "line %d: parsed, expected failure with '%s'", line, needle);
    CHECK(err.status == want, "line %d: status %s, want %s (%s)", line,
          lstm_status_string(err.status), lstm_status_string(want), err.msg);
    CHECK(contains(err.msg, needle), "line %d: message '%s' lacks '%s'", line, err.msg, needle);
    CHECK(contains(err.msg, "bad.safetensors: "), "line %d: message '%s' lacks the file name",
          line, err.msg);
    lstm_st_free(st);
}

/* A file of the given header and data bytes must fail this way. */
static void expect_fail_hdr_(int line, const char *header, const void *data, size_t dlen,
                             lstm_status want, const char *needle) {
    size_t len;
    unsigned char *b = make_file(header, strlen(header), data, dlen, &len);
    expect_fail_(line, b, len, want, needle);
    free(b);
}
#define EXPECT_FAIL(hdr, data, dlen, want, needle)                                       \
    expect_fail_hdr_(__LINE__, hdr, data, dlen, want, needle)

/* Parses buf, which must succeed. */
static lstm_st *must_parse(const void *buf, size_t len) {
    lstm_error err = {0};
    lstm_st *st = lstm_st_from_memory(buf, len, "good.safetensors", &err);
    CHECK(st != NULL && err.status == LSTM_OK, "parse failed: %s", err.msg);
    return st;
}

static void test_dtypes(void) {
    static const struct {
        lstm_dtype dt;
        const char *name;
        size_t size;
    } want[] = {{LSTM_DT_BOOL, "BOOL", 1}, {LSTM_DT_U8, "U8", 1},     {LSTM_DT_I8, "I8", 1},
                {LSTM_DT_I16, "I16", 2},   {LSTM_DT_U16, "U16", 2},   {LSTM_DT_F16, "F16", 2},
                {LSTM_DT_BF16, "BF16", 2}, {LSTM_DT_I32, "I32", 4},   {LSTM_DT_U32, "U32", 4},
                {LSTM_DT_F32, "F32", 4},   {LSTM_DT_I64, "I64", 8},   {LSTM_DT_U64, "U64", 8},
                {LSTM_DT_F64, "F64", 8}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(strcmp(lstm_dtype_name(want[i].dt), want[i].name) == 0, "%s", want[i].name);
        CHECK(lstm_dtype_size(want[i].dt) == want[i].size, "%s", want[i].name);
    }
    CHECK(lstm_dtype_size((lstm_dtype)99) == 0, "unknown dtype size");
    CHECK(strcmp(lstm_dtype_name((lstm_dtype)99), "?") == 0, "unknown dtype name");
}

/* The tensors of the round-trip tests: every dtype, a 0-d scalar,
 * zero-size tensors, unicode names and names that need escaping. */
typedef struct {
    const char *name;
    lstm_dtype dt;
    int ndim;
    int64_t shape[LSTM_MAX_DIMS];
    size_t nbytes;
    unsigned char data[64];
} sample;

static size_t make_samples(sample *s) {
    static const struct {
        const char *name;
        lstm_dtype dt;
        int ndim;
        int64_t shape[4];
    } spec[] = {
        {"weight_ih_l0", LSTM_DT_F32, 2, {2, 3}},
        {"bias_hh_l0", LSTM_DT_F32, 1, {3}},
        {"scalar", LSTM_DT_F32, 0, {0}},
        {"empty", LSTM_DT_F32, 1, {0}},
        {"empty3d", LSTM_DT_I64, 3, {2, 0, 5}},
        {"bool", LSTM_DT_BOOL, 1, {3}},
        {"u8", LSTM_DT_U8, 2, {2, 2}},
        {"i8", LSTM_DT_I8, 1, {5}},
        {"i16", LSTM_DT_I16, 1, {3}},
        {"u16", LSTM_DT_U16, 1, {3}},
        {"f16", LSTM_DT_F16, 1, {4}},
        {"bf16", LSTM_DT_BF16, 2, {1, 3}},
        {"i32", LSTM_DT_I32, 1, {2}},
        {"u32", LSTM_DT_U32, 1, {2}},
        {"step", LSTM_DT_I64, 0, {0}},
        {"u64", LSTM_DT_U64, 1, {2}},
        {"f64", LSTM_DT_F64, 1, {3}},
        {"h\xc3\xa9llo.\xe6\x9d\x83\xe9\x87\x8d", LSTM_DT_F32, 1, {1}}, /* héllo.权重 */
        {"emoji \xf0\x9f\x99\x82", LSTM_DT_U8, 0, {0}},                  /* 🙂 */
        {"esc\"\\\t\n\x01/", LSTM_DT_I8, 1, {2}},
    };
    size_t n = sizeof spec / sizeof spec[0];
    for (size_t i = 0; i < n; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].name = spec[i].name;
        s[i].dt = spec[i].dt;
        s[i].ndim = spec[i].ndim;
        size_t numel = 1;
        for (int d = 0; d < spec[i].ndim; d++) {
            s[i].shape[d] = spec[i].shape[d];
            numel *= (size_t)spec[i].shape[d];
        }
        s[i].nbytes = numel * lstm_dtype_size(spec[i].dt);
        for (size_t b = 0; b < s[i].nbytes; b++)
            s[i].data[b] = (unsigned char)(i * 31 + b * 7 + 1);
        if (spec[i].dt == LSTM_DT_BOOL)
            for (size_t b = 0; b < s[i].nbytes; b++)
                s[i].data[b] = (unsigned char)(b & 1);
    }
    return n;
}

/* st must hold exactly the samples and metadata of make_writer. */
static void check_samples(const lstm_st *st, const sample *s, size_t n) {
    CHECK(lstm_st_count(st) == n, "count %zu, want %zu", lstm_st_count(st), n);
    for (size_t i = 0; i < n; i++) {
        const lstm_st_tensor *t = lstm_st_find(st, s[i].name);
        CHECK(t != NULL, "tensor %s missing", s[i].name);
        if (!t)
            continue;
        CHECK(strcmp(t->name, s[i].name) == 0, "%s", s[i].name);
        CHECK(t->dtype == s[i].dt, "%s dtype", s[i].name);
        CHECK(t->ndim == s[i].ndim, "%s ndim %d", s[i].name, t->ndim);
        CHECK(memcmp(t->shape, s[i].shape, sizeof(int64_t) * (size_t)s[i].ndim) == 0,
              "%s shape", s[i].name);
        CHECK(t->nbytes == s[i].nbytes, "%s nbytes %zu", s[i].name, t->nbytes);
        CHECK(t->numel * lstm_dtype_size(t->dtype) == t->nbytes, "%s numel", s[i].name);
        CHECK(s[i].nbytes == 0 || memcmp(t->data, s[i].data, s[i].nbytes) == 0, "%s data",
              s[i].name);
    }
    CHECK(lstm_st_find(st, "nope") == NULL, "find of a missing name");
    CHECK(lstm_st_find(st, NULL) == NULL, "find of NULL");
    /* lstm_st_tensor_at: by data offset, contiguous, and in save_file order. */
    const unsigned char *prev_end = NULL;
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
        const unsigned char *d = t->data;
        CHECK(prev_end == NULL || d == prev_end, "tensor %zu (%s) not contiguous", i, t->name);
        prev_end = d + t->nbytes;
        if (i > 0) {
            const lstm_st_tensor *p = lstm_st_tensor_at(st, i - 1);
            size_t ps = lstm_dtype_size(p->dtype), ts = lstm_dtype_size(t->dtype);
            CHECK(ps >= ts, "%s (%s) before %s (%s)", p->name, lstm_dtype_name(p->dtype),
                  t->name, lstm_dtype_name(t->dtype));
            if (ts > 1)
                CHECK((size_t)(d - (const unsigned char *)lstm_st_tensor_at(st, 0)->data) % ts ==
                          0,
                      "%s misaligned in the data section", t->name);
        }
    }
    CHECK(lstm_st_tensor_at(st, lstm_st_count(st)) == NULL, "tensor_at past the end");
    CHECK(lstm_st_meta_count(st) == 2, "meta count %zu", lstm_st_meta_count(st));
    CHECK(lstm_st_meta(st, "format") && strcmp(lstm_st_meta(st, "format"), "pt") == 0,
          "meta format");
    const char *note = lstm_st_meta(st, "n\xc3\xb6te");
    CHECK(note && strcmp(note, "line1\nline2 \"q\" \xe2\x82\xac") == 0, "meta note");
    CHECK(lstm_st_meta(st, "missing") == NULL, "missing meta");
    const char *k, *v;
    lstm_st_meta_at(st, 0, &k, &v);
    CHECK(k && strcmp(k, "format") == 0 && strcmp(v, "pt") == 0, "meta_at 0 (sorted keys)");
    lstm_st_meta_at(st, 2, &k, &v);
    CHECK(k == NULL && v == NULL, "meta_at past the end");
}

static lstm_st_writer *make_writer(const sample *s, size_t n) {
    lstm_error err;
    lstm_st_writer *w = lstm_st_writer_create();
    /* Added in reverse, so the writer's sorting is what orders the file. */
    for (size_t i = n; i-- > 0;) {
        lstm_status st = lstm_st_writer_add(w, s[i].name, s[i].dt, s[i].ndim, s[i].shape,
                                            s[i].nbytes ? s[i].data : NULL, &err);
        CHECK(st == LSTM_OK, "add %s: %s", s[i].name, err.msg);
    }
    CHECK(lstm_st_writer_meta(w, "n\xc3\xb6te", "old", &err) == LSTM_OK, "%s", err.msg);
    CHECK(lstm_st_writer_meta(w, "format", "pt", &err) == LSTM_OK, "%s", err.msg);
    CHECK(lstm_st_writer_meta(w, "n\xc3\xb6te", "line1\nline2 \"q\" \xe2\x82\xac", &err) ==
              LSTM_OK,
          "replace: %s", err.msg);
    return w;
}

static void test_round_trip(void) {
    sample s[32];
    size_t n = make_samples(s);
    lstm_st_writer *w = make_writer(s, n);
    lstm_error err;
    void *buf;
    size_t len;
    CHECK(lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK, "%s", err.msg);
    uint64_t hn;
    memcpy(&hn, buf, 8);
    CHECK((8 + hn) % 8 == 0, "header length %llu not padded", (unsigned long long)hn);
    CHECK(memcmp((char *)buf + 8, "{\"__metadata__\":{", 17) == 0, "metadata first");

    lstm_st *st = must_parse(buf, len);
    if (st) {
        check_samples(st, s, n);
        CHECK(strcmp(lstm_st_name(st), "good.safetensors") == 0, "name %s", lstm_st_name(st));
        /* Zero elements still have a dtype: the wrong kind fails. */
        const lstm_st_tensor *e = lstm_st_find(st, "empty");
        CHECK(lstm_st_read_i64(st, e, NULL, 0, &err) == LSTM_ERR_SHAPE, "i64 of empty F32");
        CHECK(lstm_st_read_f32(st, e, NULL, 0, &err) == LSTM_OK, "f32 of empty F32");
        /* Writing what was read gives the same bytes. */
        lstm_st_writer *w2 = lstm_st_writer_create();
        for (size_t i = 0; i < lstm_st_count(st); i++) {
            const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
            CHECK(lstm_st_writer_add(w2, t->name, t->dtype, t->ndim, t->shape, t->data, &err) ==
                      LSTM_OK,
                  "%s", err.msg);
        }
        for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
            const char *k, *v;
            lstm_st_meta_at(st, i, &k, &v);
            lstm_st_writer_meta(w2, k, v, &err);
        }
        void *buf2;
        size_t len2;
        CHECK(lstm_st_writer_to_memory(w2, &buf2, &len2, &err) == LSTM_OK, "%s", err.msg);
        CHECK(len2 == len && memcmp(buf, buf2, len) == 0, "rewrite differs");
        free(buf2);
        lstm_st_writer_free(w2);
    }
    lstm_st_free(st);

    /* Through a file: the same bytes, and no temporary file left over. */
    const char *path = tmp_path("round trip.safetensors");
    CHECK(lstm_st_writer_save(w, path, &err) == LSTM_OK, "save: %s", err.msg);
    st = lstm_st_open(path, &err);
    CHECK(st != NULL, "open: %s", err.msg);
    if (st) {
        check_samples(st, s, n);
        CHECK(strcmp(lstm_st_name(st), path) == 0, "name %s", lstm_st_name(st));
    }
    lstm_st_free(st);
    FILE *f = fopen(path, "rb");
    unsigned char *back = malloc(len + 1);
    size_t got = f ? fread(back, 1, len + 1, f) : 0;
    if (f)
        fclose(f);
    CHECK(got == len && memcmp(back, buf, len) == 0, "file differs from to_memory");
    free(back);
    /* The mode a plain fopen would give: 0666 less the umask. */
    mode_t mask = umask(0);
    umask(mask);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == (0666 & ~mask), "mode %o",
          (unsigned)sb.st_mode);
    /* Saving again replaces the file. */
    CHECK(lstm_st_writer_save(w, path, &err) == LSTM_OK, "save again: %s", err.msg);
    free(buf);
    lstm_st_writer_free(w);

    /* An empty writer and NULL handling. */
    w = lstm_st_writer_create();
    CHECK(lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK, "%s", err.msg);
    st = must_parse(buf, len);
    CHECK(lstm_st_count(st) == 0 && lstm_st_meta_count(st) == 0, "empty file");
    lstm_st_free(st);
    free(buf);
    lstm_st_writer_free(w);
    lstm_st_writer_free(NULL);
    lstm_st_free(NULL);
    CHECK(lstm_st_count(NULL) == 0 && lstm_st_find(NULL, "a") == NULL, "NULL st");
    st = lstm_st_from_memory("\x02\0\0\0\0\0\0\0{}", 10, NULL, &err);
    CHECK(st && strcmp(lstm_st_name(st), "<memory>") == 0, "default name");
    lstm_st_free(st);
}

/* Files exactly as the reference writes them (safetensors' own tests, and
 * a PyTorch-like state dict with metadata): parse, and write the same. */
static void expect_written(lstm_st_writer *w, const unsigned char *want, size_t want_len,
                           const char *what) {
    lstm_error err;
    void *buf;
    size_t len;
    CHECK(lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK, "%s: %s", what, err.msg);
    int same = buf && len == want_len && memcmp(buf, want, len) == 0;
    CHECK(same, "%s: writer bytes differ (%zu bytes, want %zu)", what, len, want_len);
    if (!same && buf && len >= 8 && want_len >= 8)
        printf("     got  %.*s\n     want %.*s\n", (int)len - 8, (char *)buf + 8,
               (int)want_len - 8, (const char *)want + 8);
    free(buf);
}

static void test_reference_layout(void) {
    lstm_error err;
    size_t len;
    unsigned char *want;

    /* safetensors' test_empty: {} padded to 8. */
    want = make_file("{}      ", 8, NULL, 0, &len);
    lstm_st_writer *w = lstm_st_writer_create();
    expect_written(w, want, len, "empty");
    free(want);
    /* ... and with metadata: N = 40. */
    want = make_file("{\"__metadata__\":{\"framework\":\"pt\"}}     ", 40, NULL, 0, &len);
    lstm_st_writer_meta(w, "framework", "pt", &err);
    expect_written(w, want, len, "metadata only");
    lstm_st_free(must_parse(want, len));
    free(want);
    lstm_st_writer_free(w);

    /* test_serialization: "attn.0" F32 (1,2,3), N = 64, no padding; and
     * test_serialization_forced_alignement: "attn0" (1,1,2,3), N = 72. */
    float vals[6] = {0, 1, 2, 3, 4, 5};
    const char *h1 = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    const char *h2 = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}"
                     "       ";
    CHECK(strlen(h1) == 64 && strlen(h2) == 72, "reference header lengths");
    int64_t s1[3] = {1, 2, 3}, s2[4] = {1, 1, 2, 3};
    w = lstm_st_writer_create();
    lstm_st_writer_add(w, "attn.0", LSTM_DT_F32, 3, s1, vals, &err);
    want = make_file(h1, 64, vals, 24, &len);
    expect_written(w, want, len, "attn.0");
    free(want);
    lstm_st_writer_free(w);
    w = lstm_st_writer_create();
    lstm_st_writer_add(w, "attn0", LSTM_DT_F32, 4, s2, vals, &err);
    want = make_file(h2, 72, vals, 24, &len);
    expect_written(w, want, len, "attn0");
    lstm_st *st = must_parse(want, len);
    if (st) {
        float got[6];
        const lstm_st_tensor *t = lstm_st_find(st, "attn0");
        CHECK(t && t->ndim == 4 && t->numel == 6, "attn0 shape");
        CHECK(t && lstm_st_read_f32(st, t, got, 6, &err) == LSTM_OK, "%s", err.msg);
        CHECK_CLOSE(got, vals, 6, 0, 0, "attn0 values");
    }
    lstm_st_free(st);
    free(want);
    lstm_st_writer_free(w);

    /* A state dict of many dtypes, as save_file(tensors, metadata={"format":
     * "pt"}) lays it out: by the Dtype enum descending (U64, I64, F64, F32,
     * U32, I32, BF16, F16, U16, I16, I8, U8, BOOL), then by name; compact JSON
     * with "__metadata__" first; spaces so that 8 + N is a multiple of 8. */
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"big\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[0,8]},"
        "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]},"
        "\"f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[16,32]},"
        "\"bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[32,44]},"
        "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[44,68]},"
        "\"idx\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[68,76]},"
        "\"emb\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[76,84]},"
        "\"half\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[84,88]},"
        "\"i16\":{\"dtype\":\"I16\",\"shape\":[0],\"data_offsets\":[88,88]},"
        "\"bytes\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[88,91]},"
        "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[91,94]}}";
    char *hdr = pad_header(json);
    CHECK(strlen(hdr) == 672 && strlen(json) == 669, "header length %zu", strlen(hdr));
    unsigned char data[94];
    uint64_t big = 7;
    int64_t step = -3;
    double f64[2] = {0.5, -2.25};
    float bias[3] = {0.1f, 0.2f, 0.3f}, weight[6] = {1, -2, 3, -4, 5, -6};
    int32_t idx[2] = {-1, 100000};
    uint16_t emb[4] = {0x3f80, 0xc000, 0x4049, 0x0000}; /* 1, -2, 3.140625, 0 */
    uint16_t half[2] = {0x3c00, 0xbc00};                  /* 1, -1 */
    unsigned char bytes[3] = {0, 128, 255}, mask[3] = {1, 0, 1};
    memcpy(data + 0, &big, 8);
    memcpy(data + 8, &step, 8);
    memcpy(data + 16, f64, 16);
    memcpy(data + 32, bias, 12);
    memcpy(data + 44, weight, 24);
    memcpy(data + 68, idx, 8);
    memcpy(data + 76, emb, 8);
    memcpy(data + 84, half, 4);
    memcpy(data + 88, bytes, 3);
    memcpy(data + 91, mask, 3);
    want = make_file(hdr, strlen(hdr), data, sizeof data, &len);
    st = must_parse(want, len);
    if (st) {
        static const char *order[] = {"big", "step", "f64",  "bias",  "weight", "idx",
                                      "emb", "half", "i16",  "bytes", "mask"};
        CHECK(lstm_st_count(st) == 11, "count");
        for (size_t i = 0; i < 11 && i < lstm_st_count(st); i++)
            CHECK(strcmp(lstm_st_tensor_at(st, i)->name, order[i]) == 0, "order %zu: %s", i,
                  lstm_st_tensor_at(st, i)->name);
        CHECK(strcmp(lstm_st_meta(st, "format"), "pt") == 0, "metadata");
        const lstm_st_tensor *t = lstm_st_find(st, "step");
        int64_t i64[3];
        float f[6];
        CHECK(t->ndim == 0 && t->numel == 1, "0-d step");
        CHECK(lstm_st_read_i64(st, t, i64, 1, &err) == LSTM_OK && i64[0] == -3, "step");
        CHECK(lstm_st_read_i64(st, lstm_st_find(st, "big"), i64, 1, &err) == LSTM_OK &&
                  i64[0] == 7,
              "big");
        CHECK(lstm_st_read_f32(st, lstm_st_find(st, "weight"), f, 6, &err) == LSTM_OK, "weight");
        CHECK_CLOSE(f, weight, 6, 0, 0, "weight values");
        CHECK(lstm_st_read_f32(st, lstm_st_find(st, "emb"), f, 4, &err) == LSTM_OK, "emb");
        float emb_want[4] = {1, -2, 3.140625f, 0};
        CHECK_CLOSE(f, emb_want, 4, 0, 0, "bf16 values");
        CHECK(lstm_st_read_i64(st, lstm_st_find(st, "mask"), i64, 3, &err) == LSTM_OK &&
                  i64[0] == 1 && i64[1] == 0 && i64[2] == 1,
              "mask");
        t = lstm_st_find(st, "i16");
        CHECK(t->numel == 0 && t->nbytes == 0, "zero-size i16");
        CHECK(lstm_st_read_i64(st, t, NULL, 0, &err) == LSTM_OK, "read of zero elements");
        CHECK(lstm_st_read_f32(st, t, NULL, 0, &err) == LSTM_ERR_SHAPE, "f32 of empty I16");
    }
    lstm_st_free(st);
    /* The writer, given the same tensors in another order, writes the same bytes. */
    w = lstm_st_writer_create();
    int64_t one = 1, two = 2, three = 3, zero = 0, s23[2] = {2, 3}, s22[2] = {2, 2};
    lstm_st_writer_add(w, "mask", LSTM_DT_BOOL, 1, &three, mask, &err);
    lstm_st_writer_add(w, "weight", LSTM_DT_F32, 2, s23, weight, &err);
    lstm_st_writer_add(w, "half", LSTM_DT_F16, 1, &two, half, &err);
    lstm_st_writer_add(w, "i16", LSTM_DT_I16, 1, &zero, NULL, &err);
    lstm_st_writer_add(w, "step", LSTM_DT_I64, 0, NULL, &step, &err);
    lstm_st_writer_add(w, "emb", LSTM_DT_BF16, 2, s22, emb, &err);
    lstm_st_writer_add(w, "bias", LSTM_DT_F32, 1, &three, bias, &err);
    lstm_st_writer_add(w, "bytes", LSTM_DT_U8, 1, &three, bytes, &err);
    lstm_st_writer_add(w, "idx", LSTM_DT_I32, 1, &two, idx, &err);
    lstm_st_writer_add(w, "f64", LSTM_DT_F64, 1, &two, f64, &err);
    lstm_st_writer_add(w, "big", LSTM_DT_U64, 1, &one, &big, &err);
    lstm_st_writer_meta(w, "format", "pt", &err);
    expect_written(w, want, len, "state dict");
    lstm_st_writer_free(w);
    free(want);
    free(hdr);

    /* The project's PyTorch fixtures, written in save_file's layout by
     * tests/gen_fixtures.py: each parses, and rewriting gives its bytes. */
    DIR *dir = opendir("tests/fixtures");
    struct dirent *de;
    int nfix = 0;
    while (dir && (de = readdir(dir))) {
        size_t nl = strlen(de->d_name);
        if (nl < 12 || strcmp(de->d_name + nl - 12, ".safetensors") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "tests/fixtures/%s", de->d_name);
        st = lstm_st_open(path, &err);
        CHECK(st != NULL, "fixture: %s", err.msg);
        if (!st)
            continue;
        nfix++;
        w = lstm_st_writer_create();
        for (size_t i = 0; i < lstm_st_count(st); i++) {
            const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
            lstm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err);
        }
        for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
            const char *k, *v;
            lstm_st_meta_at(st, i, &k, &v);
            lstm_st_writer_meta(w, k, v, &err);
        }
        /* An empty "__metadata__" is not visible through the API. */
        if (lstm_st_meta_count(st) > 0) {
            void *buf;
            size_t blen;
            lstm_st_writer_to_memory(w, &buf, &blen, &err);
            FILE *f = fopen(path, "rb");
            unsigned char *file = malloc(blen + 1);
            size_t got = fread(file, 1, blen + 1, f);
            fclose(f);
            CHECK(got == blen && memcmp(file, buf, blen) == 0, "%s: rewrite differs", path);
            free(file);
            free(buf);
        }
        lstm_st_writer_free(w);
        lstm_st_free(st);
    }
    if (dir)
        closedir(dir);
    printf("ok %d fixtures of tests/fixtures parsed\n", nfix);
}

/* One F16/BF16/F64/F32 tensor each, in a hand-made file whose data starts
 * at an odd address, to check conversions and unaligned reads. */
static void test_conversions(void) {
    static const uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff, 0x8001,
                                   0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555, 0x0000, 0xfbff};
    static const float f16_want[] = {1.0f, -2.0f, 65504.0f, 6.103515625e-05f,
                                     5.9604644775390625e-08f, 6.097555160522461e-05f,
                                     -5.9604644775390625e-08f, INFINITY, -INFINITY, NAN,
                                     -0.0f, 0.333251953125f, 0.0f, -65504.0f};
    static const uint16_t bf16[] = {0x3f80, 0xc040, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x4049,
                                    0x8000};
    static const double f64[] = {1.5, -1e-3, 1e300, -1e300, 1e-50, 3.141592653589793};
    static const float f32[] = {1.25f, -7.5f, 1e-40f};
    enum { N16 = 14, NB = 8, N64 = 6, N32 = 3 };
    char json[512];
    snprintf(json, sizeof json,
             "{\"f64\":{\"dtype\":\"F64\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
             "\"f32\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
             "\"f16\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
             "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[%d,%d]}}",
             N64, 8 * N64, N32, 8 * N64, 8 * N64 + 4 * N32, N16, 8 * N64 + 4 * N32,
             8 * N64 + 4 * N32 + 2 * N16, NB, 8 * N64 + 4 * N32 + 2 * N16,
             8 * N64 + 4 * N32 + 2 * N16 + 2 * NB);
    /* Trailing spaces make N odd: every tensor is misaligned. */
    size_t jl = strlen(json);
    if (jl % 2 == 0)
        strcat(json, " ");
    strcat(json, "  ");
    unsigned char data[8 * N64 + 4 * N32 + 2 * N16 + 2 * NB];
    memcpy(data, f64, sizeof f64);
    memcpy(data + 8 * N64, f32, sizeof f32);
    memcpy(data + 8 * N64 + 4 * N32, f16, sizeof f16);
    memcpy(data + 8 * N64 + 4 * N32 + 2 * N16, bf16, sizeof bf16);
    size_t len;
    unsigned char *file = make_file(json, strlen(json), data, sizeof data, &len);
    lstm_st *st = must_parse(file, len);
    free(file);
    if (!st)
        return;
    lstm_error err;
    float got[16];
    const lstm_st_tensor *t = lstm_st_find(st, "f16");
    CHECK(((uintptr_t)t->data & 1) == 1, "f16 data should be misaligned for this test");
    CHECK(lstm_st_read_f32(st, t, got, N16, &err) == LSTM_OK, "%s", err.msg);
    for (int i = 0; i < N16; i++) {
        if (isnan(f16_want[i]))
            CHECK(isnan(got[i]), "f16[%d] = %g, want nan", i, (double)got[i]);
        else
            CHECK(got[i] == f16_want[i] && signbit(got[i]) == signbit(f16_want[i]),
                  "f16[%d] = 0x%04x -> %.9g, want %.9g", i, f16[i], (double)got[i],
                  (double)f16_want[i]);
    }
    float bf_want[NB] = {1.0f, -3.0f, INFINITY, -INFINITY, NAN, 9.18354961579912e-41f,
                         3.140625f, -0.0f};
    CHECK(lstm_st_read_f32(st, lstm_st_find(st, "bf16"), got, NB, &err) == LSTM_OK, "%s",
          err.msg);
    for (int i = 0; i < NB; i++) {
        if (isnan(bf_want[i]))
            CHECK(isnan(got[i]), "bf16[%d] = %g, want nan", i, (double)got[i]);
        else
            CHECK(got[i] == bf_want[i] && signbit(got[i]) == signbit(bf_want[i]),
                  "bf16[%d] -> %.9g, want %.9g", i, (double)got[i], (double)bf_want[i]);
    }
    CHECK(lstm_st_read_f32(st, lstm_st_find(st, "f64"), got, N64, &err) == LSTM_OK, "%s",
          err.msg);
    float f64_want[N64] = {1.5f, -1e-3f, INFINITY, -INFINITY, 0.0f, 3.14159274f};
    for (int i = 0; i < N64; i++)
        CHECK(got[i] == f64_want[i], "f64[%d] -> %.9g, want %.9g", i, (double)got[i],
              (double)f64_want[i]);
    CHECK(lstm_st_read_f32(st, lstm_st_find(st, "f32"), got, N32, &err) == LSTM_OK, "%s",
          err.msg);
    CHECK_CLOSE(got, f32, N32, 0, 0, "f32 values");

    /* Wrong element count, wrong kind of dtype. */
    CHECK(lstm_st_read_f32(st, t, got, N16 - 1, &err) == LSTM_ERR_SHAPE &&
              contains(err.msg, "\"f16\"") && contains(err.msg, "14 elements"),
          "count mismatch: %s", err.msg);
    int64_t i64[16];
    CHECK(lstm_st_read_i64(st, t, i64, N16, &err) == LSTM_ERR_SHAPE &&
              contains(err.msg, "\"f16\"") && contains(err.msg, "F16 is not an integer"),
          "i64 of f16: %s", err.msg);
    lstm_st_free(st);
}

/* Every integer dtype (and BOOL) to int64, with the limits of each. */
static void test_integers(void) {
    int8_t i8[] = {-128, 127, -1};
    uint8_t u8[] = {0, 255};
    int16_t i16[] = {-32768, 32767};
    uint16_t u16[] = {0, 65535};
    int32_t i32[] = {INT32_MIN, INT32_MAX};
    uint32_t u32[] = {0, UINT32_MAX};
    int64_t i64[] = {INT64_MIN, INT64_MAX};
    uint64_t u64[] = {0, (uint64_t)INT64_MAX};
    uint64_t u64_big[] = {1, (uint64_t)INT64_MAX + 1};
    unsigned char bools[] = {0, 1, 1};
    unsigned char bad_bool[] = {0, 2};
    lstm_error err;
    lstm_st_writer *w = lstm_st_writer_create();
    int64_t n2 = 2, n3 = 3;
    lstm_st_writer_add(w, "i8", LSTM_DT_I8, 1, &n3, i8, &err);
    lstm_st_writer_add(w, "u8", LSTM_DT_U8, 1, &n2, u8, &err);
    lstm_st_writer_add(w, "i16", LSTM_DT_I16, 1, &n2, i16, &err);
    lstm_st_writer_add(w, "u16", LSTM_DT_U16, 1, &n2, u16, &err);
    lstm_st_writer_add(w, "i32", LSTM_DT_I32, 1, &n2, i32, &err);
    lstm_st_writer_add(w, "u32", LSTM_DT_U32, 1, &n2, u32, &err);
    lstm_st_writer_add(w, "i64", LSTM_DT_I64, 1, &n2, i64, &err);
    lstm_st_writer_add(w, "u64", LSTM_DT_U64, 1, &n2, u64, &err);
    lstm_st_writer_add(w, "u64_big", LSTM_DT_U64, 1, &n2, u64_big, &err);
    lstm_st_writer_add(w, "bool", LSTM_DT_BOOL, 1, &n3, bools, &err);
    lstm_st_writer_add(w, "bad_bool", LSTM_DT_BOOL, 1, &n2, bad_bool, &err);
    void *buf;
    size_t len;
    lstm_st_writer_to_memory(w, &buf, &len, &err);
    lstm_st_writer_free(w);
    lstm_st *st = must_parse(buf, len);
    free(buf);
    if (!st)
        return;
    int64_t got[3];
#define EXPECT_I64(name, n, ...)                                                          \
    do {                                                                                  \
        int64_t want_[] = {__VA_ARGS__};                                                  \
        CHECK(lstm_st_read_i64(st, lstm_st_find(st, name), got, n, &err) == LSTM_OK,      \
              "%s: %s", name, err.msg);                                                   \
        CHECK(memcmp(got, want_, sizeof want_) == 0, "%s values", name);                  \
    } while (0)
    EXPECT_I64("i8", 3, -128, 127, -1);
    EXPECT_I64("u8", 2, 0, 255);
    EXPECT_I64("i16", 2, -32768, 32767);
    EXPECT_I64("u16", 2, 0, 65535);
    EXPECT_I64("i32", 2, INT32_MIN, INT32_MAX);
    EXPECT_I64("u32", 2, 0, (int64_t)UINT32_MAX);
    EXPECT_I64("i64", 2, INT64_MIN, INT64_MAX);
    EXPECT_I64("u64", 2, 0, INT64_MAX);
    EXPECT_I64("bool", 3, 0, 1, 1);
#undef EXPECT_I64
    CHECK(lstm_st_read_i64(st, lstm_st_find(st, "u64_big"), got, 2, &err) ==
                  LSTM_ERR_UNSUPPORTED &&
              contains(err.msg, "\"u64_big\": element 1 is 9223372036854775808"),
          "u64 over int64: %s", err.msg);
    CHECK(lstm_st_read_i64(st, lstm_st_find(st, "bad_bool"), got, 2, &err) == LSTM_ERR_FORMAT &&
              contains(err.msg, "element 1 is 2, not a BOOL"),
          "bool 2: %s", err.msg);
    float f[3];
    CHECK(lstm_st_read_f32(st, lstm_st_find(st, "i32"), f, 2, &err) == LSTM_ERR_SHAPE &&
              contains(err.msg, "\"i32\": dtype I32 is not a floating type"),
          "f32 of i32: %s", err.msg);
    CHECK(lstm_st_read_f32(st, NULL, f, 2, &err) == LSTM_ERR_INVALID, "NULL tensor");
    lstm_st_free(st);
}

/* One malformed file per rule, each with its own message. */
static void test_malformed(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    float two[2] = {1, 2};
    {
        size_t len;
        unsigned char *b = make_file(ok, strlen(ok), two, 8, &len);
        lstm_st_free(must_parse(b, len));
        /* Shorter than 8 bytes. */
        expect_fail_(__LINE__, b, 5, LSTM_ERR_FORMAT, "file is 5 bytes, shorter than the 8-byte");
        expect_fail_(__LINE__, NULL, 0, LSTM_ERR_FORMAT, "file is 0 bytes");
        /* Header length past the end of the file, and over the limit. */
        expect_fail_(__LINE__, b, 8 + strlen(ok) - 1, LSTM_ERR_FORMAT,
                     "offset 0: header length 54 runs past the end of the file (53 bytes follow");
        uint64_t big = 100000001;
        memcpy(b, &big, 8);
        expect_fail_(__LINE__, b, len, LSTM_ERR_FORMAT,
                     "offset 0: header length 100000001 is over the limit of 100000000");
        big = UINT64_MAX;
        memcpy(b, &big, 8);
        expect_fail_(__LINE__, b, len, LSTM_ERR_FORMAT, "over the limit");
        /* A NUL byte in the header. */
        big = strlen(ok);
        memcpy(b, &big, 8);
        b[8 + 20] = 0;
        expect_fail_(__LINE__, b, len, LSTM_ERR_FORMAT, "offset 28: NUL byte in the header");
        free(b);
    }
    /* Not JSON, not UTF-8, not an object. */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",}}", NULL, 0, LSTM_ERR_FORMAT,
                "header is not valid JSON:");
    EXPECT_FAIL("{\"a\" 1}", NULL, 0, LSTM_ERR_FORMAT, "(line 1, column 6)");
    EXPECT_FAIL("{} x", NULL, 0, LSTM_ERR_FORMAT, "offset 12: header is not valid JSON");
    EXPECT_FAIL("", NULL, 0, LSTM_ERR_FORMAT, "header is not valid JSON");
    EXPECT_FAIL("{\"a\\u0000\":1}", NULL, 0, LSTM_ERR_FORMAT, "header is not valid JSON");
    EXPECT_FAIL("{\"\xff\":{}}", NULL, 0, LSTM_ERR_FORMAT, "header is not valid UTF-8");
    EXPECT_FAIL("{\"\xc3\x28\":{}}", NULL, 0, LSTM_ERR_FORMAT, "header is not valid UTF-8");
    EXPECT_FAIL("[1, 2]", NULL, 0, LSTM_ERR_FORMAT, "offset 8: header is not a JSON object");
    EXPECT_FAIL("\"a\"", NULL, 0, LSTM_ERR_FORMAT, "header is not a JSON object");
    /* Duplicate names. */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                two, 8, LSTM_ERR_FORMAT, "duplicate name in the header");
    /* Entries. */
    EXPECT_FAIL("{\"a\":5}", NULL, 0, LSTM_ERR_FORMAT, "tensor \"a\": entry is not a JSON object");
    EXPECT_FAIL("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8, LSTM_ERR_FORMAT,
                "tensor \"a\": missing \"dtype\"");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", two, 8, LSTM_ERR_FORMAT,
                "tensor \"a\": missing \"shape\"");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", two, 8, LSTM_ERR_FORMAT,
                "tensor \"a\": missing \"data_offsets\"");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", two,
                8, LSTM_ERR_FORMAT, "tensor \"a\": unexpected key \"x\"");
    EXPECT_FAIL("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT, "tensor \"a\": \"dtype\" is not a string");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"XYZ\",\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT, "tensor \"a\": unsupported dtype \"XYZ\"");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT, "unsupported dtype \"f32\"");
    EXPECT_FAIL("{\"w8\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_UNSUPPORTED, "tensor \"w8\": unsupported dtype \"F8_E4M3\"");
    /* Shapes. */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT, "tensor \"a\": \"shape\" is not a list");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT, "tensor \"a\": \"shape\"[1] is not a non-negative integer");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT, "\"shape\"[0] is not a non-negative integer");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT, "\"shape\"[0] is not a non-negative integer");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],"
                "\"data_offsets\":[0,8]}}",
                two, 8, LSTM_ERR_UNSUPPORTED, "tensor \"a\": 9 dimensions, more than the 8");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                "\"data_offsets\":[0,8]}}",
                two, 8, LSTM_ERR_FORMAT,
                "shape [4294967296, 4294967296] of F32 overflows the byte size");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                "\"data_offsets\":[0,8]}}",
                two, 8, LSTM_ERR_FORMAT, "overflows the byte size");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,"
                "9223372036854775807,0],\"data_offsets\":[0,0]}}",
                NULL, 0, LSTM_ERR_FORMAT, "overflows the byte size");
    /* data_offsets. */
    static const char *bad_offsets[] = {"[0]", "[0,8,8]", "[\"0\",8]", "[-1,8]", "[0,8.0]",
                                        "{\"0\":8}", "8", "[0,null]"};
    for (size_t i = 0; i < sizeof bad_offsets / sizeof bad_offsets[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":%s}}",
                 bad_offsets[i]);
        EXPECT_FAIL(h, two, 8, LSTM_ERR_FORMAT,
                    "tensor \"a\": \"data_offsets\" is not a list of two non-negative integers");
    }
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", two, 8,
                LSTM_ERR_FORMAT, "tensor \"a\": data_offsets [8, 4] end before they begin");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", two, 8,
                LSTM_ERR_FORMAT,
                "tensor \"a\": data_offsets [0, 8] hold 8 bytes, but F32 of shape [3] needs 12");
    /* Layout: first at 0, no gaps, no overlaps, exact file size. */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", two, 8,
                LSTM_ERR_FORMAT,
                "tensor \"a\": data starts at 4 (file offset 66), but the first tensor's data "
                "must start at 0");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                two, 8, LSTM_ERR_FORMAT,
                "gap of 2 bytes at file offset 115 between tensor \"a\" (ends at 2) and "
                "tensor \"b\" (starts at 4)");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                two, 8, LSTM_ERR_FORMAT,
                "tensor \"b\" (data_offsets [4, 8]) overlaps tensor \"a\" (ends at 8");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                two, 8, LSTM_ERR_FORMAT, "overlaps tensor");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", two, 8,
                LSTM_ERR_FORMAT,
                "4 bytes after the last tensor's data, at file offset 66 (the data section is "
                "8 bytes; the file size must be exact)");
    EXPECT_FAIL("{}", two, 8, LSTM_ERR_FORMAT,
                "8 bytes of data at file offset 10, but the header lists no tensors");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", two, 8,
                LSTM_ERR_FORMAT,
                "tensor \"a\": data_offsets end at 16, past the end of the data (8 bytes from "
                "file offset 63)");
    /* Metadata. */
    EXPECT_FAIL("{\"__metadata__\":[\"a\"]}", NULL, 0, LSTM_ERR_FORMAT,
                "\"__metadata__\" is not a JSON object of strings");
    EXPECT_FAIL("{\"__metadata__\":null}", NULL, 0, LSTM_ERR_FORMAT,
                "\"__metadata__\" is not a JSON object");
    EXPECT_FAIL("{\"__metadata__\":{\"epoch\":3}}", NULL, 0, LSTM_ERR_FORMAT,
                "\"__metadata__\": the value of \"epoch\" is not a string");
    EXPECT_FAIL("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", NULL, 0, LSTM_ERR_FORMAT,
                "duplicate name in the header");

    /* Accepted: trailing spaces (padding), whitespace, an empty object,
     * tensors in any order in the header, zero-size tensors anywhere. */
    static const char *good[] = {
        "{}",
        "{}      ",
        " {\n} \t\r\n",
        "{\"__metadata__\":{}}",
        "{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
        "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
        "\"a\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[0,4]},"
        "\"e\":{\"dtype\":\"F64\",\"shape\":[0,3],\"data_offsets\":[8,8]}}   ",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t len;
        size_t dlen = i == 4 ? 8 : 0;
        unsigned char *b = make_file(good[i], strlen(good[i]), two, dlen, &len);
        lstm_st *st = must_parse(b, len);
        if (st && i == 4) {
            CHECK(strcmp(lstm_st_tensor_at(st, 0)->name, "a") == 0 &&
                      strcmp(lstm_st_tensor_at(st, 1)->name, "z") == 0 &&
                      strcmp(lstm_st_tensor_at(st, 2)->name, "b") == 0 &&
                      strcmp(lstm_st_tensor_at(st, 3)->name, "e") == 0,
                  "sorted by offset");
        }
        lstm_st_free(st);
        free(b);
    }
}

static void test_writer_errors(void) {
    lstm_error err;
    lstm_st_writer *w = lstm_st_writer_create();
    float x[2] = {1, 2};
    int64_t shape[LSTM_MAX_DIMS + 1] = {2, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t neg = -2;
    CHECK(lstm_st_writer_add(w, "a", LSTM_DT_F32, 1, shape, x, &err) == LSTM_OK, "%s", err.msg);
#define EXPECT_ADD(name, dt, ndim, shp, data, needle)                                        \
    CHECK(lstm_st_writer_add(w, name, dt, ndim, shp, data, &err) == LSTM_ERR_INVALID &&      \
              contains(err.msg, needle),                                                     \
          "add: %s", err.msg)
    EXPECT_ADD("a", LSTM_DT_F32, 1, shape, x, "tensor \"a\" was already added");
    EXPECT_ADD("__metadata__", LSTM_DT_F32, 1, shape, x, "\"__metadata__\" is reserved");
    EXPECT_ADD("", LSTM_DT_F32, 1, shape, x, "tensor name is empty");
    EXPECT_ADD(NULL, LSTM_DT_F32, 1, shape, x, "tensor name is empty");
    EXPECT_ADD("\xff\xfe", LSTM_DT_F32, 1, shape, x, "not valid UTF-8");
    EXPECT_ADD("b", (lstm_dtype)42, 1, shape, x, "invalid dtype 42");
    EXPECT_ADD("b", LSTM_DT_F32, -1, shape, x, "ndim -1 is outside [0, 8]");
    EXPECT_ADD("b", LSTM_DT_F32, LSTM_MAX_DIMS + 1, shape, x, "ndim 9 is outside [0, 8]");
    EXPECT_ADD("b", LSTM_DT_F32, 1, &neg, x, "dimension 0 is -2");
    EXPECT_ADD("b", LSTM_DT_F32, 1, NULL, x, "shape is NULL");
    EXPECT_ADD("b", LSTM_DT_F32, 1, shape, NULL, "data is NULL");
    int64_t huge[2] = {INT64_MAX, 4};
    EXPECT_ADD("b", LSTM_DT_F32, 2, huge, x, "byte size overflows");
#undef EXPECT_ADD
    CHECK(lstm_st_writer_add(NULL, "b", LSTM_DT_F32, 1, shape, x, &err) == LSTM_ERR_INVALID,
          "NULL writer");
    CHECK(lstm_st_writer_meta(w, "k", "\xff", &err) == LSTM_ERR_INVALID, "meta utf-8");
    CHECK(lstm_st_writer_meta(w, NULL, "v", &err) == LSTM_ERR_INVALID, "meta NULL key");
    /* Failed adds left the writer as it was: one tensor. */
    void *buf;
    size_t len;
    CHECK(lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK, "%s", err.msg);
    lstm_st *st = must_parse(buf, len);
    CHECK(lstm_st_count(st) == 1, "one tensor");
    lstm_st_free(st);
    free(buf);
    lstm_st_writer_free(w);
}

/* No "*.tmp.*" file is left in the scratch directory. */
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
    int same = got == len && memcmp(b, want, len) == 0;
    free(b);
    return same;
}

static void test_files(void) {
    lstm_error err;
    lstm_st *st = lstm_st_open(tmp_path("missing.safetensors"), &err);
    CHECK(st == NULL && err.status == LSTM_ERR_IO && contains(err.msg, "missing.safetensors") &&
              contains(err.msg, "cannot open: No such file or directory"),
          "missing: %s", err.msg);
    st = lstm_st_open(tmpdir, &err);
    CHECK(st == NULL && err.status == LSTM_ERR_IO && contains(err.msg, tmpdir) &&
              contains(err.msg, "is a directory"),
          "directory: %s", err.msg);
    st = lstm_st_open(NULL, &err);
    CHECK(st == NULL && err.status == LSTM_ERR_INVALID, "NULL path");

    /* A file on disk that breaks a rule names its path. */
    const char *bad = tmp_path("bad.safetensors");
    FILE *f = fopen(bad, "wb");
    fwrite("\x02\0\0\0\0\0\0\0[]", 1, 10, f);
    fclose(f);
    st = lstm_st_open(bad, &err);
    CHECK(st == NULL && err.status == LSTM_ERR_FORMAT && contains(err.msg, bad) &&
              contains(err.msg, "not a JSON object"),
          "bad file: %s", err.msg);

    /* A small existing file, and a writer whose save must fail. */
    float x[4] = {1, 2, 3, 4};
    int64_t n4 = 4, big_n = 1 << 16;
    lstm_st_writer *small = lstm_st_writer_create();
    lstm_st_writer_add(small, "x", LSTM_DT_F32, 1, &n4, x, &err);
    void *want;
    size_t want_len;
    lstm_st_writer_to_memory(small, &want, &want_len, &err);
    const char *keep = tmp_path("keep.safetensors");
    char keep_path[256];
    snprintf(keep_path, sizeof keep_path, "%s", keep);
    CHECK(lstm_st_writer_save(small, keep_path, &err) == LSTM_OK, "%s", err.msg);
    float *zeros = calloc((size_t)big_n, sizeof(float));
    lstm_st_writer *big = lstm_st_writer_create();
    lstm_st_writer_add(big, "big", LSTM_DT_F32, 1, &big_n, zeros, &err);

    /* Into a directory that does not exist. */
    const char *nodir = tmp_path("no/such/dir/x.safetensors");
    CHECK(lstm_st_writer_save(big, nodir, &err) == LSTM_ERR_IO && contains(err.msg, nodir) &&
              contains(err.msg, "No such file or directory"),
          "save into a missing directory: %s", err.msg);
    /* Over a directory: rename fails, the directory stays. */
    char adir[256];
    snprintf(adir, sizeof adir, "%s", tmp_path("adir"));
    mkdir(adir, 0755);
    struct stat sb;
    CHECK(lstm_st_writer_save(big, adir, &err) == LSTM_ERR_IO && contains(err.msg, adir) &&
              contains(err.msg, "rename"),
          "save over a directory: %s", err.msg);
    CHECK(stat(adir, &sb) == 0 && S_ISDIR(sb.st_mode), "directory still there");
    /* Over an existing file, failing mid-write (file size limit): the old
     * file is untouched. */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        lstm_status s = lstm_st_writer_save(big, keep_path, &err);
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK(s == LSTM_ERR_IO && contains(err.msg, keep_path) &&
                  contains(err.msg, "File too large") && contains(err.msg, "untouched"),
              "save past the file size limit: %s", err.msg);
    }
    signal(SIGXFSZ, prev);
    CHECK(file_equals(keep_path, want, want_len), "existing file changed by a failed save");
    CHECK(temp_files_left() == 0, "temporary files left behind");
    /* And a successful save replaces it. */
    CHECK(lstm_st_writer_save(big, keep_path, &err) == LSTM_OK, "%s", err.msg);
    st = lstm_st_open(keep_path, &err);
    CHECK(st && lstm_st_count(st) == 1 && lstm_st_find(st, "big"), "replaced: %s", err.msg);
    lstm_st_free(st);
    CHECK(temp_files_left() == 0, "temporary files left behind");
    /* A relative path (directory "."). */
    char cwd[512];
    if (getcwd(cwd, sizeof cwd) && chdir(tmpdir) == 0) {
        CHECK(lstm_st_writer_save(small, "relative.safetensors", &err) == LSTM_OK, "%s",
              err.msg);
        CHECK(file_equals("relative.safetensors", want, want_len), "relative save");
        CHECK(chdir(cwd) == 0, "chdir back");
    }

    free(want);
    free(zeros);
    lstm_st_writer_free(small);
    lstm_st_writer_free(big);
    unlink(tmp_path("relative.safetensors"));
    unlink(tmp_path("keep.safetensors"));
    unlink(tmp_path("bad.safetensors"));
    unlink(tmp_path("round trip.safetensors"));
    rmdir(tmp_path("adir"));
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_dtypes();
    test_round_trip();
    test_reference_layout();
    test_conversions();
    test_integers();
    test_malformed();
    test_writer_errors();
    test_files();
    CHECK(rmdir(tmpdir) == 0, "scratch directory %s not empty: %s", tmpdir, strerror(errno));
    return check_summary();
}
