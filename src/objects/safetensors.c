/* safetensors.c - the safetensors reader and writer: an 8-byte little-endian
 * header length N, N bytes of JSON (parsed with Jansson), then the raw data.
 * The reader checks every rule of the format; the writer lays files out as
 * Python's safetensors.torch.save_file does, and saves them atomically
 * (the file itself is read and written by fileio.c). */
#include "internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor data is stored little-endian and handed out as raw bytes, so the
 * host must be little-endian too. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c supports little-endian hosts only"
#endif

/* The reference implementation's limit on the header length. */
#define ST_MAX_HEADER 100000000u

/* Tensor names in messages are cut to this many bytes. */
#define NAME_FMT "\"%.200s\""

/* rank: the position in the reference's Dtype enum, which orders the
 * tensors of a written file (largest rank first). */
static const struct {
    const char *name;
    size_t size;
    int rank;
} dtypes[] = {
    [LSTM_DT_BOOL] = {"BOOL", 1, 0}, [LSTM_DT_U8] = {"U8", 1, 1},
    [LSTM_DT_I8] = {"I8", 1, 2},     [LSTM_DT_I16] = {"I16", 2, 3},
    [LSTM_DT_U16] = {"U16", 2, 4},   [LSTM_DT_F16] = {"F16", 2, 5},
    [LSTM_DT_BF16] = {"BF16", 2, 6}, [LSTM_DT_I32] = {"I32", 4, 7},
    [LSTM_DT_U32] = {"U32", 4, 8},   [LSTM_DT_F32] = {"F32", 4, 9},
    [LSTM_DT_F64] = {"F64", 8, 10},  [LSTM_DT_I64] = {"I64", 8, 11},
    [LSTM_DT_U64] = {"U64", 8, 12},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

/* Dtypes of the format that this build cannot convert: a file using them
 * is valid, so it fails with LSTM_ERR_UNSUPPORTED rather than FORMAT. */
static const char *const other_dtypes[] = {"F4",      "F6_E2M3",     "F6_E3M2",     "F8_E5M2",
                                           "F8_E4M3", "F8_E8M0",     "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                                           "C64"};

static int dtype_valid(lstm_dtype dt) { return (unsigned)dt < N_DTYPES; }

/* "F32", "BF16", ...; "?" for a value outside the enum. */
const char *lstm_dtype_name(lstm_dtype dt) { return dtype_valid(dt) ? dtypes[dt].name : "?"; }

/* Bytes per element; 0 for a value outside the enum. */
size_t lstm_dtype_size(lstm_dtype dt) { return dtype_valid(dt) ? dtypes[dt].size : 0; }

/* 1 on a little-endian host: the run-time twin of the #error above, for
 * compilers that do not say. */
static int host_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */

/* A tensor and its data offsets, relative to the start of the data. */
typedef struct {
    lstm_st_tensor t;
    uint64_t begin, end;
} st_entry;

struct lstm_st {
    char *name;           /* for messages */
    unsigned char *bytes; /* the whole file, owned */
    size_t len;
    json_t *root;         /* the parsed header; owns tensor names and metadata */
    st_entry *entries;    /* sorted by data offset */
    size_t count;
    size_t *by_name;      /* indices into entries, sorted by name */
    struct {
        const char *key, *value;
    } *meta;              /* in file order */
    size_t meta_count;
};

/* Fills err with status and "<file>: <message>"; returns status. */
static lstm_status st_fail(const lstm_st *st, lstm_error *err, lstm_status status,
                           const char *fmt, ...) LSTM_PRINTF(4, 5);
static lstm_status st_fail(const lstm_st *st, lstm_error *err, lstm_status status,
                           const char *fmt, ...) {
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lstm_fail(err, status, "%s: %s", st && st->name ? st->name : "?", msg);
}

/* Writes "[2, 3]" into buf (200 bytes hold any shape). */
static void format_shape(char *buf, size_t size, const int64_t *shape, int ndim) {
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
}

/* Parses the "__metadata__" object into st->meta. */
static lstm_status parse_meta(lstm_st *st, json_t *obj, lstm_error *err) {
    if (!json_is_object(obj))
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "\"__metadata__\" is not a JSON object of strings");
    size_t n = json_object_size(obj);
    st->meta = calloc(n ? n : 1, sizeof *st->meta);
    if (!st->meta)
        return st_fail(st, err, LSTM_ERR_NOMEM, "out of memory for %zu metadata entries", n);
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        if (!json_is_string(value))
            return st_fail(st, err, LSTM_ERR_FORMAT,
                           "\"__metadata__\": the value of " NAME_FMT " is not a string", key);
        st->meta[st->meta_count].key = key;
        st->meta[st->meta_count].value = json_string_value(value);
        st->meta_count++;
    }
    return LSTM_OK;
}

/* Looks up a dtype name; fails with FORMAT for a name that is no dtype of
 * the format and UNSUPPORTED for one this build does not read. */
static lstm_status parse_dtype(lstm_st *st, const char *name, const char *s, lstm_dtype *dt,
                               lstm_error *err) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *dt = (lstm_dtype)i;
            return LSTM_OK;
        }
    lstm_status status = LSTM_ERR_FORMAT;
    for (size_t i = 0; i < sizeof other_dtypes / sizeof other_dtypes[0]; i++)
        if (strcmp(s, other_dtypes[i]) == 0)
            status = LSTM_ERR_UNSUPPORTED;
    return st_fail(st, err, status,
                   "tensor " NAME_FMT ": unsupported dtype \"%.40s\" (this build reads BOOL, "
                   "U8, I8, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64)",
                   name, s);
}

/* Checks one header entry {"dtype", "shape", "data_offsets"} and fills e
 * (all but the data pointer). */
static lstm_status parse_entry(lstm_st *st, const char *name, json_t *obj, st_entry *e,
                               lstm_error *err) {
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    lstm_status s;
    if (!json_is_object(obj))
        return st_fail(st, err, LSTM_ERR_FORMAT, "tensor " NAME_FMT ": entry is not a JSON object",
                       name);
    for (int k = 0; k < 3; k++)
        if (!json_object_get(obj, keys[k]))
            return st_fail(st, err, LSTM_ERR_FORMAT, "tensor " NAME_FMT ": missing \"%s\"", name,
                           keys[k]);
    if (json_object_size(obj) != 3) {
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v) {
            if (strcmp(key, keys[0]) && strcmp(key, keys[1]) && strcmp(key, keys[2]))
                return st_fail(st, err, LSTM_ERR_FORMAT,
                               "tensor " NAME_FMT ": unexpected key \"%.100s\"", name, key);
        }
    }
    e->t.name = name;

    json_t *dt = json_object_get(obj, "dtype");
    if (!json_is_string(dt))
        return st_fail(st, err, LSTM_ERR_FORMAT, "tensor " NAME_FMT ": \"dtype\" is not a string",
                       name);
    if ((s = parse_dtype(st, name, json_string_value(dt), &e->t.dtype, err)))
        return s;

    json_t *shape = json_object_get(obj, "shape");
    if (!json_is_array(shape))
        return st_fail(st, err, LSTM_ERR_FORMAT, "tensor " NAME_FMT ": \"shape\" is not a list",
                       name);
    size_t ndim = json_array_size(shape);
    if (ndim > LSTM_MAX_DIMS)
        return st_fail(st, err, LSTM_ERR_UNSUPPORTED,
                       "tensor " NAME_FMT ": %zu dimensions, more than the %d supported", name,
                       ndim, LSTM_MAX_DIMS);
    e->t.ndim = (int)ndim;
    /* As the reference: the running product must not overflow. */
    size_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return st_fail(st, err, LSTM_ERR_FORMAT,
                           "tensor " NAME_FMT ": \"shape\"[%zu] is not a non-negative integer",
                           name, i);
        uint64_t v = (uint64_t)json_integer_value(d);
        e->t.shape[i] = (int64_t)v;
        if (v > SIZE_MAX || __builtin_mul_overflow(numel, (size_t)v, &numel))
            overflow = 1;
    }
    size_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, dtypes[e->t.dtype].size, &nbytes)) {
        char sh[200];
        format_shape(sh, sizeof sh, e->t.shape, e->t.ndim);
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "tensor " NAME_FMT ": shape %s of %s overflows the byte size", name, sh,
                       dtypes[e->t.dtype].name);
    }
    e->t.numel = numel;
    e->t.nbytes = nbytes;

    json_t *off = json_object_get(obj, "data_offsets");
    json_t *b = json_array_get(off, 0), *en = json_array_get(off, 1);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) ||
        !json_is_integer(en) || json_integer_value(b) < 0 || json_integer_value(en) < 0)
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "tensor " NAME_FMT
                       ": \"data_offsets\" is not a list of two non-negative integers",
                       name);
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    if (e->begin > e->end)
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "tensor " NAME_FMT ": data_offsets [%llu, %llu] end before they begin", name,
                       (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != nbytes) {
        char sh[200];
        format_shape(sh, sizeof sh, e->t.shape, e->t.ndim);
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "tensor " NAME_FMT ": data_offsets [%llu, %llu] hold %llu bytes, but %s "
                       "of shape %s needs %zu",
                       name, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin), dtypes[e->t.dtype].name, sh,
                       nbytes);
    }
    return LSTM_OK;
}

/* Orders entries by data offsets (begin, then end), then by name. */
static int cmp_entry(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

/* qsort has no context argument, so the name index sorts pointers. */
static int cmp_entry_name(const void *a, const void *b) {
    const st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->t.name, (*y)->t.name);
}

/* Checks that the sorted entries tile the data section exactly and points
 * each tensor at its bytes. */
static lstm_status check_layout(lstm_st *st, size_t data_at, lstm_error *err) {
    size_t data_len = st->len - data_at;
    uint64_t pos = 0;
    for (size_t i = 0; i < st->count; i++) {
        st_entry *e = &st->entries[i];
        if (e->begin != pos) {
            if (i == 0)
                return st_fail(st, err, LSTM_ERR_FORMAT,
                               "tensor " NAME_FMT ": data starts at %llu (file offset %llu), but "
                               "the first tensor's data must start at 0",
                               e->t.name, (unsigned long long)e->begin,
                               (unsigned long long)(data_at + e->begin));
            const char *prev = st->entries[i - 1].t.name;
            if (e->begin > pos)
                return st_fail(st, err, LSTM_ERR_FORMAT,
                               "gap of %llu bytes at file offset %llu between tensor " NAME_FMT
                               " (ends at %llu) and tensor " NAME_FMT " (starts at %llu)",
                               (unsigned long long)(e->begin - pos),
                               (unsigned long long)(data_at + pos), prev,
                               (unsigned long long)pos, e->t.name,
                               (unsigned long long)e->begin);
            return st_fail(st, err, LSTM_ERR_FORMAT,
                           "tensor " NAME_FMT " (data_offsets [%llu, %llu]) overlaps "
                           "tensor " NAME_FMT " (ends at %llu, file offset %llu)",
                           e->t.name, (unsigned long long)e->begin, (unsigned long long)e->end,
                           prev, (unsigned long long)pos, (unsigned long long)(data_at + pos));
        }
        if (e->end > data_len)
            return st_fail(st, err, LSTM_ERR_FORMAT,
                           "tensor " NAME_FMT ": data_offsets end at %llu, past the end of the "
                           "data (%zu bytes from file offset %zu)",
                           e->t.name, (unsigned long long)e->end, data_len, data_at);
        e->t.data = st->bytes + data_at + e->begin;
        pos = e->end;
    }
    if (st->count == 0 && data_len)
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "%zu bytes of data at file offset %zu, but the header lists no tensors",
                       data_len, data_at);
    if (pos != data_len)
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "%llu bytes after the last tensor's data, at file offset %llu (the data "
                       "section is %zu bytes; the file size must be exact)",
                       (unsigned long long)(data_len - pos), (unsigned long long)(data_at + pos),
                       data_len);
    return LSTM_OK;
}

/* Parses and checks the file in st->bytes. */
static lstm_status st_parse(lstm_st *st, lstm_error *err) {
    lstm_status s;
    if (!host_little_endian())
        return st_fail(st, err, LSTM_ERR_UNSUPPORTED,
                       "safetensors needs a little-endian host");
    if (st->len < 8)
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "file is %zu bytes, shorter than the 8-byte header length", st->len);
    uint64_t n;
    memcpy(&n, st->bytes, 8);
    if (n > ST_MAX_HEADER)
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "offset 0: header length %llu is over the limit of %u bytes",
                       (unsigned long long)n, ST_MAX_HEADER);
    if (n > st->len - 8)
        return st_fail(st, err, LSTM_ERR_FORMAT,
                       "offset 0: header length %llu runs past the end of the file (%zu bytes "
                       "follow the length)",
                       (unsigned long long)n, st->len - 8);
    const char *hdr = (const char *)st->bytes + 8;
    const char *nul = memchr(hdr, 0, (size_t)n);
    if (nul)
        return st_fail(st, err, LSTM_ERR_FORMAT, "offset %zu: NUL byte in the header",
                       (size_t)(nul - (const char *)st->bytes));

    json_error_t je;
    st->root = json_loadb(hdr, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!st->root) {
        size_t at = 8 + (je.position > 0 ? (size_t)je.position : 0);
        switch (json_error_code(&je)) {
        case json_error_invalid_utf8:
            return st_fail(st, err, LSTM_ERR_FORMAT,
                           "offset %zu: header is not valid UTF-8 (%s)", at, je.text);
        case json_error_duplicate_key:
            return st_fail(st, err, LSTM_ERR_FORMAT,
                           "offset %zu: duplicate name in the header (%s)", at, je.text);
        case json_error_out_of_memory:
            return st_fail(st, err, LSTM_ERR_NOMEM, "out of memory parsing the header");
        default:
            return st_fail(st, err, LSTM_ERR_FORMAT,
                           "offset %zu: header is not valid JSON: %s (line %d, column %d)", at,
                           je.text, je.line, je.column);
        }
    }
    if (!json_is_object(st->root))
        return st_fail(st, err, LSTM_ERR_FORMAT, "offset 8: header is not a JSON object");

    size_t total = json_object_size(st->root);
    st->entries = calloc(total ? total : 1, sizeof *st->entries);
    st->by_name = calloc(total ? total : 1, sizeof *st->by_name);
    if (!st->entries || !st->by_name)
        return st_fail(st, err, LSTM_ERR_NOMEM, "out of memory for %zu tensors", total);
    const char *key;
    json_t *value;
    json_object_foreach(st->root, key, value) {
        if (strcmp(key, "__metadata__") == 0)
            s = parse_meta(st, value, err);
        else
            s = parse_entry(st, key, value, &st->entries[st->count++], err);
        if (s)
            return s;
    }
    qsort(st->entries, st->count, sizeof *st->entries, cmp_entry);
    if ((s = check_layout(st, 8 + (size_t)n, err)))
        return s;

    const st_entry **idx = malloc((st->count ? st->count : 1) * sizeof *idx);
    if (!idx)
        return st_fail(st, err, LSTM_ERR_NOMEM, "out of memory for %zu tensors", st->count);
    for (size_t i = 0; i < st->count; i++)
        idx[i] = &st->entries[i];
    qsort(idx, st->count, sizeof *idx, cmp_entry_name);
    for (size_t i = 0; i < st->count; i++)
        st->by_name[i] = (size_t)(idx[i] - st->entries);
    free(idx);
    return lstm_ok(err);
}

/* Takes ownership of bytes (freed on failure too) and checks them. */
static lstm_st *st_from_owned(unsigned char *bytes, size_t len, const char *name,
                              lstm_error *err) {
    lstm_st *st = calloc(1, sizeof *st);
    char *copy = strdup(name);
    if (!st || !copy) {
        free(st);
        free(copy);
        free(bytes);
        lstm_fail(err, LSTM_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    st->name = copy;
    st->bytes = bytes;
    st->len = len;
    if (st_parse(st, err)) {
        lstm_st_free(st);
        return NULL;
    }
    return st;
}

/* Reads the whole file at path (lstm_read_file) and checks it. Fails with
 * LSTM_ERR_IO for a file that cannot be opened or read, or a directory. */
lstm_st *lstm_st_open(const char *path, lstm_error *err) {
    if (!path) {
        lstm_fail(err, LSTM_ERR_INVALID, "lstm_st_open: path is NULL");
        return NULL;
    }
    char *buf;
    size_t len;
    if (lstm_read_file(path, &buf, &len, err))
        return NULL;
    return st_from_owned((unsigned char *)buf, len, path, err);
}

/* Copies len bytes from buf and checks them; name (may be NULL, then
 * "<memory>") is used in messages. */
lstm_st *lstm_st_from_memory(const void *buf, size_t len, const char *name, lstm_error *err) {
    if (!name)
        name = "<memory>";
    if (!buf && len) {
        lstm_fail(err, LSTM_ERR_INVALID, "%s: buffer is NULL", name);
        return NULL;
    }
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy) {
        lstm_fail(err, LSTM_ERR_NOMEM, "%s: out of memory copying %zu bytes", name, len);
        return NULL;
    }
    if (len)
        memcpy(copy, buf, len);
    return st_from_owned(copy, len, name, err);
}

/* Frees st and everything it owns (tensor names and data included). */
void lstm_st_free(lstm_st *st) {
    if (!st)
        return;
    json_decref(st->root);
    free(st->entries);
    free(st->by_name);
    free(st->meta);
    free(st->bytes);
    free(st->name);
    free(st);
}

/* The number of tensors (0 for NULL). */
size_t lstm_st_count(const lstm_st *st) { return st ? st->count : 0; }

/* The i-th tensor in data-offset order, or NULL when i is out of range. */
const lstm_st_tensor *lstm_st_tensor_at(const lstm_st *st, size_t i) {
    return st && i < st->count ? &st->entries[i].t : NULL;
}

/* The tensor called name, or NULL. Binary search over the name index. */
const lstm_st_tensor *lstm_st_find(const lstm_st *st, const char *name) {
    if (!st || !name)
        return NULL;
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const st_entry *e = &st->entries[st->by_name[mid]];
        int c = strcmp(name, e->t.name);
        if (c == 0)
            return &e->t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The metadata value for key, or NULL. */
const char *lstm_st_meta(const lstm_st *st, const char *key) {
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->meta_count; i++)
        if (strcmp(st->meta[i].key, key) == 0)
            return st->meta[i].value;
    return NULL;
}

/* The number of metadata entries (0 for NULL). */
size_t lstm_st_meta_count(const lstm_st *st) { return st ? st->meta_count : 0; }

/* The i-th metadata entry in file order; NULL, NULL when out of range. */
void lstm_st_meta_at(const lstm_st *st, size_t i, const char **key, const char **value) {
    int ok = st && i < st->meta_count;
    if (key)
        *key = ok ? st->meta[i].key : NULL;
    if (value)
        *value = ok ? st->meta[i].value : NULL;
}

/* The path given to lstm_st_open, or the name given to from_memory. */
const char *lstm_st_name(const lstm_st *st) { return st ? st->name : NULL; }

/* IEEE half to float, exactly (every half is a float). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        /* Zero or subnormal: man * 2^-24, exact in float. */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (man << 13); /* inf, or nan keeping its payload */
    else
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Checks the common arguments of the read functions. */
static lstm_status check_read(const lstm_st *st, const lstm_st_tensor *t, const void *dst,
                              size_t n, lstm_error *err) {
    if (!t)
        return st_fail(st, err, LSTM_ERR_INVALID, "tensor is NULL");
    if (n != t->numel)
        return st_fail(st, err, LSTM_ERR_SHAPE,
                       "tensor " NAME_FMT ": has %zu elements, but %zu were asked for", t->name,
                       t->numel, n);
    if (!dst && n)
        return st_fail(st, err, LSTM_ERR_INVALID, "tensor " NAME_FMT ": destination is NULL",
                       t->name);
    if (!dtype_valid(t->dtype))
        return st_fail(st, err, LSTM_ERR_INVALID, "tensor " NAME_FMT ": invalid dtype %d",
                       t->name, (int)t->dtype);
    return LSTM_OK;
}

/* Converts a floating tensor (F32, F16, BF16, F64) of st to n floats;
 * n must equal t->numel. Other dtypes fail with LSTM_ERR_SHAPE. */
lstm_status lstm_st_read_f32(const lstm_st *st, const lstm_st_tensor *t, float *dst, size_t n,
                             lstm_error *err) {
    lstm_status s = check_read(st, t, dst, n, err);
    if (s)
        return s;
    const unsigned char *src = t->data;
    switch (t->dtype) {
    case LSTM_DT_F32:
        if (n)
            memcpy(dst, src, n * 4);
        break;
    case LSTM_DT_F16:
    case LSTM_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            if (t->dtype == LSTM_DT_F16) {
                dst[i] = half_to_float(h);
            } else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&dst[i], &bits, 4);
            }
        }
        break;
    case LSTM_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d; /* IEEE: rounds to nearest, overflows to inf */
        }
        break;
    default:
        return st_fail(st, err, LSTM_ERR_SHAPE,
                       "tensor " NAME_FMT ": dtype %s is not a floating type (F32, F16, BF16, "
                       "F64)",
                       t->name, dtypes[t->dtype].name);
    }
    return lstm_ok(err);
}

/* Converts an integer (I8..U64) or BOOL tensor of st to n int64 values;
 * n must equal t->numel. Floating dtypes fail with LSTM_ERR_SHAPE, a U64
 * above INT64_MAX with LSTM_ERR_UNSUPPORTED, a BOOL byte other than 0 or
 * 1 with LSTM_ERR_FORMAT. */
lstm_status lstm_st_read_i64(const lstm_st *st, const lstm_st_tensor *t, int64_t *dst, size_t n,
                             lstm_error *err) {
    lstm_status s = check_read(st, t, dst, n, err);
    if (s)
        return s;
    if (t->dtype == LSTM_DT_F32 || t->dtype == LSTM_DT_F16 || t->dtype == LSTM_DT_BF16 ||
        t->dtype == LSTM_DT_F64)
        return st_fail(st, err, LSTM_ERR_SHAPE,
                       "tensor " NAME_FMT ": dtype %s is not an integer type (BOOL, U8, I8, "
                       "I16, U16, I32, U32, I64, U64)",
                       t->name, dtypes[t->dtype].name);
    const unsigned char *src = t->data;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case LSTM_DT_BOOL:
            if (src[i] > 1)
                return st_fail(st, err, LSTM_ERR_FORMAT,
                               "tensor " NAME_FMT ": element %zu is %u, not a BOOL (0 or 1)",
                               t->name, i, src[i]);
            dst[i] = src[i];
            break;
        case LSTM_DT_U8: dst[i] = src[i]; break;
        case LSTM_DT_I8: dst[i] = (int8_t)src[i]; break;
#define CONVERT(DT, T)                                                                   \
    case DT: {                                                                           \
        T v;                                                                             \
        memcpy(&v, src + i * sizeof v, sizeof v);                                        \
        dst[i] = (int64_t)v;                                                             \
        break;                                                                           \
    }
            CONVERT(LSTM_DT_I16, int16_t)
            CONVERT(LSTM_DT_U16, uint16_t)
            CONVERT(LSTM_DT_I32, int32_t)
            CONVERT(LSTM_DT_U32, uint32_t)
            CONVERT(LSTM_DT_I64, int64_t)
#undef CONVERT
        case LSTM_DT_U64: {
            uint64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v > INT64_MAX)
                return st_fail(st, err, LSTM_ERR_UNSUPPORTED,
                               "tensor " NAME_FMT ": element %zu is %llu, too large for int64",
                               t->name, i, (unsigned long long)v);
            dst[i] = (int64_t)v;
            break;
        }
        default: /* the floating types, rejected above */
            break;
        }
    }
    return lstm_ok(err);
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */

typedef struct {
    char *name;
    lstm_dtype dtype;
    int ndim;
    int64_t shape[LSTM_MAX_DIMS];
    size_t nbytes;
    unsigned char *data; /* NULL when nbytes is 0 */
} st_wtensor;

typedef struct {
    char *key, *value;
} st_wmeta;

struct lstm_st_writer {
    st_wtensor *t;
    size_t count, cap;
    st_wmeta *meta;
    size_t meta_count, meta_cap;
};

/* An empty writer, or NULL when out of memory. */
lstm_st_writer *lstm_st_writer_create(void) { return calloc(1, sizeof(lstm_st_writer)); }

/* Frees the writer and its copies of the data. */
void lstm_st_writer_free(lstm_st_writer *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->count; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->t);
    free(w->meta);
    free(w);
}

/* 1 when s is valid UTF-8, as Jansson (the reader) checks it. */
static int utf8_ok(const char *s) {
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* Adds a tensor, copying its data (numel * dtype size bytes). Fails with
 * LSTM_ERR_INVALID for an empty, reserved, duplicate or non-UTF-8 name, an
 * unknown dtype, ndim outside [0, LSTM_MAX_DIMS], a negative dimension, a
 * size that overflows, or NULL data for a nonempty tensor. */
lstm_status lstm_st_writer_add(lstm_st_writer *w, const char *name, lstm_dtype dtype, int ndim,
                               const int64_t *shape, const void *data, lstm_error *err) {
    if (!w)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_st_writer_add: writer is NULL");
    if (!name || !*name)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_st_writer_add: tensor name is empty");
    if (strcmp(name, "__metadata__") == 0)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_st_writer_add: \"__metadata__\" is reserved, not a tensor name");
    if (!utf8_ok(name))
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_st_writer_add: tensor name is not valid UTF-8");
    if (!dtype_valid(dtype))
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_st_writer_add: tensor " NAME_FMT
                         ": invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > LSTM_MAX_DIMS)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_st_writer_add: tensor " NAME_FMT ": ndim %d is outside [0, %d]",
                         name, ndim, LSTM_MAX_DIMS);
    if (ndim > 0 && !shape)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_st_writer_add: tensor " NAME_FMT ": shape is NULL", name);
    size_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lstm_fail(err, LSTM_ERR_INVALID,
                             "lstm_st_writer_add: tensor " NAME_FMT ": dimension %d is %lld",
                             name, i, (long long)shape[i]);
        if ((uint64_t)shape[i] > SIZE_MAX ||
            __builtin_mul_overflow(numel, (size_t)shape[i], &numel))
            overflow = 1;
    }
    size_t nbytes;
    if (overflow || __builtin_mul_overflow(numel, dtypes[dtype].size, &nbytes))
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_st_writer_add: tensor " NAME_FMT ": the byte size overflows", name);
    if (!data && nbytes)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_st_writer_add: tensor " NAME_FMT ": data is NULL", name);
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return lstm_fail(err, LSTM_ERR_INVALID,
                             "lstm_st_writer_add: tensor " NAME_FMT " was already added", name);
    if (w->count == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        st_wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return lstm_fail(err, LSTM_ERR_NOMEM, "lstm_st_writer_add: out of memory");
        w->t = t;
        w->cap = cap;
    }
    st_wtensor *t = &w->t[w->count];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = nbytes ? malloc(nbytes) : NULL;
    if (!t->name || (nbytes && !t->data)) {
        free(t->name);
        free(t->data);
        return lstm_fail(err, LSTM_ERR_NOMEM,
                         "lstm_st_writer_add: tensor " NAME_FMT ": out of memory for %zu bytes",
                         name, nbytes);
    }
    if (nbytes)
        memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->count++;
    return lstm_ok(err);
}

/* Adds the metadata entry key = value, or replaces its value. Both must be
 * valid UTF-8 (LSTM_ERR_INVALID otherwise). */
lstm_status lstm_st_writer_meta(lstm_st_writer *w, const char *key, const char *value,
                                lstm_error *err) {
    if (!w || !key || !value)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_st_writer_meta: NULL argument");
    if (!utf8_ok(key) || !utf8_ok(value))
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_st_writer_meta: key or value is not valid UTF-8");
    char *v = strdup(value);
    if (!v)
        return lstm_fail(err, LSTM_ERR_NOMEM, "lstm_st_writer_meta: out of memory");
    for (size_t i = 0; i < w->meta_count; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return lstm_ok(err);
        }
    if (w->meta_count == w->meta_cap) {
        size_t cap = w->meta_cap ? 2 * w->meta_cap : 8;
        st_wmeta *m = realloc(w->meta, cap * sizeof *m);
        if (!m) {
            free(v);
            return lstm_fail(err, LSTM_ERR_NOMEM, "lstm_st_writer_meta: out of memory");
        }
        w->meta = m;
        w->meta_cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return lstm_fail(err, LSTM_ERR_NOMEM, "lstm_st_writer_meta: out of memory");
    }
    w->meta[w->meta_count].key = k;
    w->meta[w->meta_count].value = v;
    w->meta_count++;
    return lstm_ok(err);
}

/* A growing byte buffer; `failed` is set once an allocation fails. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

/* Appends n bytes, doubling the capacity as needed. */
static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n && cap <= SIZE_MAX / 2)
            cap *= 2;
        char *p = cap - b->len >= n ? realloc(b->p, cap) : NULL;
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Appends a C string. */
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Appends a decimal number. */
static void sb_u64(sbuf *b, uint64_t v) {
    char num[24];
    sb_put(b, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v));
}

/* A JSON string escaped as serde_json (what safetensors uses) escapes it:
 * ", \, \b \f \n \r \t, other control bytes as \u00xx; UTF-8 as is. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        const char *esc = NULL;
        char u[8];
        switch (*c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (*c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", *c);
                esc = u;
            }
        }
        if (esc)
            sb_str(b, esc);
        else
            sb_put(b, (const char *)c, 1);
    }
    sb_put(b, "\"", 1);
}

/* save_file's order: by the reference Dtype enum descending (U64, I64,
 * F64, F32, U32, I32, BF16, F16, U16, I16, I8, U8, BOOL), then by name. */
static int cmp_wtensor(const void *a, const void *b) {
    const st_wtensor *x = *(const st_wtensor *const *)a, *y = *(const st_wtensor *const *)b;
    if (dtypes[x->dtype].rank != dtypes[y->dtype].rank)
        return dtypes[y->dtype].rank - dtypes[x->dtype].rank;
    return strcmp(x->name, y->name);
}

/* Orders metadata entries by key. */
static int cmp_wmeta(const void *a, const void *b) {
    return strcmp((*(const st_wmeta *const *)a)->key, (*(const st_wmeta *const *)b)->key);
}

/* The file's layout: the first 8 + N bytes (length and padded header) in
 * head, the tensors in file order, and the data size. */
typedef struct {
    sbuf head;
    const st_wtensor **order;
    size_t data_len;
} st_plan;

/* Frees what plan_make allocated. */
static void plan_free(st_plan *p) {
    free(p->head.p);
    free(p->order);
}

/* Lays out the file: compact JSON, "__metadata__" first (keys sorted) when
 * there is metadata, header padded with spaces to a multiple of 8. */
static lstm_status plan_make(const lstm_st_writer *w, st_plan *p, lstm_error *err) {
    memset(p, 0, sizeof *p);
    const st_wmeta **meta = malloc((w->meta_count ? w->meta_count : 1) * sizeof *meta);
    p->order = malloc((w->count ? w->count : 1) * sizeof *p->order);
    if (!meta || !p->order) {
        free(meta);
        return lstm_fail(err, LSTM_ERR_NOMEM, "safetensors writer: out of memory");
    }
    for (size_t i = 0; i < w->count; i++)
        p->order[i] = &w->t[i];
    qsort(p->order, w->count, sizeof *p->order, cmp_wtensor);
    for (size_t i = 0; i < w->meta_count; i++)
        meta[i] = &w->meta[i];
    qsort(meta, w->meta_count, sizeof *meta, cmp_wmeta);

    sbuf *b = &p->head;
    sb_put(b, "\0\0\0\0\0\0\0\0{", 9); /* the length is filled in below */
    if (w->meta_count) {
        sb_str(b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->meta_count; i++) {
            if (i)
                sb_put(b, ",", 1);
            sb_json_string(b, meta[i]->key);
            sb_put(b, ":", 1);
            sb_json_string(b, meta[i]->value);
        }
        sb_put(b, "}", 1);
    }
    free(meta);
    size_t off = 0;
    for (size_t i = 0; i < w->count; i++) {
        const st_wtensor *t = p->order[i];
        if (i || w->meta_count)
            sb_put(b, ",", 1);
        sb_json_string(b, t->name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, dtypes[t->dtype].name);
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d)
                sb_put(b, ",", 1);
            sb_u64(b, (uint64_t)t->shape[d]);
        }
        sb_str(b, "],\"data_offsets\":[");
        sb_u64(b, off);
        sb_put(b, ",", 1);
        if (__builtin_add_overflow(off, t->nbytes, &off)) {
            plan_free(p);
            return lstm_fail(err, LSTM_ERR_INVALID, "safetensors writer: data size overflows");
        }
        sb_u64(b, off);
        sb_str(b, "]}");
    }
    sb_put(b, "}", 1);
    while (!b->failed && b->len % 8)
        sb_put(b, " ", 1);
    if (b->failed) {
        plan_free(p);
        return lstm_fail(err, LSTM_ERR_NOMEM, "safetensors writer: out of memory");
    }
    uint64_t n = b->len - 8;
    if (n > ST_MAX_HEADER) {
        plan_free(p);
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "safetensors writer: header would be %llu bytes, over the %u-byte "
                         "limit of readers",
                         (unsigned long long)n, ST_MAX_HEADER);
    }
    memcpy(b->p, &n, 8); /* little-endian host */
    p->data_len = off;
    return LSTM_OK;
}

/* The whole file in a malloc'd buffer (*buf, *len) that the caller frees. */
lstm_status lstm_st_writer_to_memory(const lstm_st_writer *w, void **buf, size_t *len,
                                     lstm_error *err) {
    if (!w || !buf || !len)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_st_writer_to_memory: NULL argument");
    *buf = NULL;
    *len = 0;
    st_plan p;
    lstm_status s = plan_make(w, &p, err);
    if (s)
        return s;
    size_t total;
    unsigned char *out = NULL;
    if (!__builtin_add_overflow(p.head.len, p.data_len, &total))
        out = malloc(total);
    if (!out) {
        plan_free(&p);
        return lstm_fail(err, LSTM_ERR_NOMEM, "safetensors writer: out of memory for %zu bytes",
                         p.head.len + p.data_len);
    }
    memcpy(out, p.head.p, p.head.len);
    size_t at = p.head.len;
    for (size_t i = 0; i < w->count; i++) {
        if (p.order[i]->nbytes)
            memcpy(out + at, p.order[i]->data, p.order[i]->nbytes);
        at += p.order[i]->nbytes;
    }
    plan_free(&p);
    *buf = out;
    *len = total;
    return lstm_ok(err);
}

/* One atomic write (lstm_write_file_parts) of the header and each tensor's
 * bytes in file order, without first copying them into one buffer. */
lstm_status lstm_st_writer_save(const lstm_st_writer *w, const char *path, lstm_error *err) {
    if (!w || !path || !*path)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_st_writer_save: NULL argument or empty path");
    st_plan p;
    lstm_status s = plan_make(w, &p, err);
    if (s)
        return s;
    lstm_file_part *parts = malloc(sizeof *parts * (w->count + 1));
    if (!parts) {
        plan_free(&p);
        return lstm_fail(err, LSTM_ERR_NOMEM, "%s: out of memory", path);
    }
    parts[0] = (lstm_file_part){p.head.p, p.head.len};
    for (size_t i = 0; i < w->count; i++)
        parts[i + 1] = (lstm_file_part){p.order[i]->data, p.order[i]->nbytes};
    s = lstm_write_file_parts(path, parts, w->count + 1, err);
    free(parts);
    plan_free(&p);
    return s;
}
