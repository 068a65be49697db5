/* vocab.c - the vocabulary: byte strings to dense ids, with counts, in an
 * open-addressing hash table; pruning by frequency; and a JSON form in which
 * any byte string survives the round trip. */
#include "vocab.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;       /* len bytes and a NUL, owned */
    size_t len;
    long count;
    uint64_t hash;
} vocab_entry;

struct lstm_vocab {
    vocab_entry *entries; /* by id */
    int size, cap;
    int *slots;           /* ids, -1 for an empty slot; nslots is a power of two */
    size_t nslots;
};

/* FNV-1a, then a splitmix64 finaliser so that the low bits, which pick the
 * slot, depend on every byte. */
static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* The slot holding s, or the empty slot where it would go. */
static size_t find_slot(const lstm_vocab *v, const char *s, size_t len, uint64_t h) {
    size_t i = (size_t)h & (v->nslots - 1);
    for (;;) {
        int id = v->slots[i];
        if (id < 0)
            return i;
        const vocab_entry *e = &v->entries[id];
        if (e->hash == h && e->len == len && (len == 0 || memcmp(e->s, s, len) == 0))
            return i;
        i = (i + 1) & (v->nslots - 1);
    }
}

/* Doubles the slot array and re-inserts every id; -1 when out of memory. */
static int grow_slots(lstm_vocab *v) {
    size_t n = v->nslots * 2;
    if (n < v->nslots || n > SIZE_MAX / sizeof(int))
        return -1;
    int *slots = malloc(n * sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < n; i++)
        slots[i] = -1;
    for (int id = 0; id < v->size; id++) {
        size_t i = (size_t)v->entries[id].hash & (n - 1);
        while (slots[i] >= 0)
            i = (i + 1) & (n - 1);
        slots[i] = id;
    }
    free(v->slots);
    v->slots = slots;
    v->nslots = n;
    return 0;
}

/* Creates an empty vocabulary; NULL when out of memory. */
lstm_vocab *vocab_create(void) {
    lstm_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->nslots = 16;
    v->slots = malloc(v->nslots * sizeof *v->slots);
    if (!v->slots) {
        free(v);
        return NULL;
    }
    for (size_t i = 0; i < v->nslots; i++)
        v->slots[i] = -1;
    return v;
}

/* Frees v and its strings; accepts NULL. */
void vocab_free(lstm_vocab *v) {
    if (!v)
        return;
    for (int i = 0; i < v->size; i++)
        free(v->entries[i].s);
    free(v->entries);
    free(v->slots);
    free(v);
}

/* Adds s with `count` occurrences, or adds count to it when present.
 * Returns its id, or -1 when out of memory or the vocabulary is full. */
static int vocab_add_count(lstm_vocab *v, const char *s, size_t len, long count) {
    uint64_t h = hash_bytes(s, len);
    size_t slot = find_slot(v, s, len, h);
    if (v->slots[slot] >= 0) {
        int id = v->slots[slot];
        v->entries[id].count += count;
        return id;
    }
    if (v->size == INT_MAX || len == SIZE_MAX)
        return -1;
    if (v->size == v->cap) {
        int cap = v->cap ? (v->cap <= INT_MAX / 2 ? v->cap * 2 : INT_MAX) : 16;
        vocab_entry *e = realloc(v->entries, (size_t)cap * sizeof *e);
        if (!e)
            return -1;
        v->entries = e;
        v->cap = cap;
    }
    /* Keep the table at most half full, so probes stay short. */
    if ((size_t)(v->size + 1) * 2 > v->nslots) {
        if (grow_slots(v))
            return -1;
        slot = find_slot(v, s, len, h);
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, s, len);
    copy[len] = 0;
    int id = v->size++;
    v->entries[id] = (vocab_entry){copy, len, count, h};
    v->slots[slot] = id;
    return id;
}

/* Counts one occurrence of s[0..len); returns its id or -1. */
int vocab_add(lstm_vocab *v, const char *s, size_t len) {
    if (!v || (!s && len))
        return -1;
    return vocab_add_count(v, s ? s : "", len, 1);
}

/* The id of s[0..len), or -1. */
int vocab_find(const lstm_vocab *v, const char *s, size_t len) {
    if (!v || (!s && len))
        return -1;
    return v->slots[find_slot(v, s ? s : "", len, hash_bytes(s ? s : "", len))];
}

int vocab_size(const lstm_vocab *v) { return v ? v->size : 0; }

/* The bytes of entry id (NUL-terminated, owned by v) and their count in
 * *len (may be NULL); NULL for an id out of range. */
const char *vocab_string(const lstm_vocab *v, int id, size_t *len) {
    if (!v || id < 0 || id >= v->size) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->entries[id].len;
    return v->entries[id].s;
}

/* How many times entry id was added; 0 for an id out of range. */
long vocab_count(const lstm_vocab *v, int id) {
    if (!v || id < 0 || id >= v->size)
        return 0;
    return v->entries[id].count;
}

/* Most frequent first; ties in byte order (a prefix before the longer). */
static int entry_order(const void *pa, const void *pb) {
    const vocab_entry *a = *(const vocab_entry *const *)pa, *b = *(const vocab_entry *const *)pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->s, b->s, n) : 0;
    if (c)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

/* The reserved strings first (ids 0..nreserved-1, with their counts in v,
 * 0 when absent), then v's other entries seen at least min_count times,
 * most frequent first, ties in byte order, up to max_size entries in all
 * (0: no limit; the reserved strings are kept even beyond it). NULL when
 * out of memory or when `reserved` repeats a string. */
lstm_vocab *vocab_prune(const lstm_vocab *v, const char *const *reserved, int nreserved,
                        long min_count, int max_size) {
    if (!v || nreserved < 0 || (nreserved > 0 && !reserved))
        return NULL;
    lstm_vocab *out = vocab_create();
    const vocab_entry **order = malloc(((size_t)v->size + 1) * sizeof *order);
    if (!out || !order)
        goto fail;
    for (int i = 0; i < nreserved; i++) {
        if (!reserved[i])
            goto fail;
        size_t len = strlen(reserved[i]);
        int in_v = vocab_find(v, reserved[i], len);
        if (vocab_add_count(out, reserved[i], len, in_v >= 0 ? v->entries[in_v].count : 0) != i)
            goto fail; /* out of memory, or a repeated reserved string */
    }
    size_t n = 0;
    for (int id = 0; id < v->size; id++) {
        const vocab_entry *e = &v->entries[id];
        if (e->count >= min_count && vocab_find(out, e->s, e->len) < 0)
            order[n++] = e;
    }
    if (n > 1)
        qsort(order, n, sizeof *order, entry_order);
    int limit = max_size > 0 ? max_size : INT_MAX;
    for (size_t i = 0; i < n && out->size < limit; i++)
        if (vocab_add_count(out, order[i]->s, order[i]->len, order[i]->count) < 0)
            goto fail;
    free(order);
    return out;
fail:
    free(order);
    vocab_free(out);
    return NULL;
}

/* 1 when s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or
 * code points above U+10FFFF) without NUL: what a JSON string can hold. */
static int json_safe(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07, min = 0x10000;
        else
            return 0;
        if (len - i - 1 < n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* One entry as JSON: a string, or an array of its byte values. */
static json_t *entry_json(const vocab_entry *e) {
    if (json_safe((const unsigned char *)e->s, e->len)) {
        json_t *str = json_stringn(e->s, e->len);
        if (str)
            return str;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < e->len; i++) {
        if (json_array_append_new(arr, json_integer((unsigned char)e->s[i]))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* v's entries in id order as a compact JSON array, malloc'd (free with
 * free()); NULL when out of memory. Counts are not written. */
char *vocab_to_json(const lstm_vocab *v) {
    if (!v)
        return NULL;
    json_t *arr = json_array();
    for (int id = 0; arr && id < v->size; id++) {
        if (json_array_append_new(arr, entry_json(&v->entries[id]))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (!arr)
        return NULL;
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

/* Parses vocab_to_json's output; entries get count 0. Fails with
 * LSTM_ERR_FORMAT for text that is not such an array or repeats an entry. */
lstm_vocab *vocab_from_json(const char *json, const char *what, lstm_error *err) {
    if (!what)
        what = "vocabulary";
    if (!json) {
        lstm_fail(err, LSTM_ERR_INVALID, "%s: JSON text is NULL", what);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!root) {
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", what,
                  jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    lstm_vocab *v = NULL;
    char *bytes = NULL;
    if (!json_is_array(root)) {
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: expected a JSON array of strings", what);
        goto fail;
    }
    size_t n = json_array_size(root);
    if (n > INT_MAX) {
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: %zu entries, more than %d", what, n, INT_MAX);
        goto fail;
    }
    v = vocab_create();
    if (!v) {
        lstm_fail(err, LSTM_ERR_NOMEM, "%s: out of memory", what);
        goto fail;
    }
    for (size_t id = 0; id < n; id++) {
        json_t *item = json_array_get(root, id);
        const char *s;
        size_t len;
        if (json_is_string(item)) {
            s = json_string_value(item);
            len = json_string_length(item);
        } else if (json_is_array(item)) {
            len = json_array_size(item);
            free(bytes);
            bytes = malloc(len + 1);
            if (!bytes) {
                lstm_fail(err, LSTM_ERR_NOMEM, "%s: out of memory", what);
                goto fail;
            }
            for (size_t k = 0; k < len; k++) {
                json_t *b = json_array_get(item, k);
                json_int_t x = json_is_integer(b) ? json_integer_value(b) : -1;
                if (x < 0 || x > 255) {
                    lstm_fail(err, LSTM_ERR_FORMAT,
                              "%s: id %zu: element %zu is not a byte value (an integer in 0..255)",
                              what, id, k);
                    goto fail;
                }
                bytes[k] = (char)x;
            }
            s = bytes;
        } else {
            lstm_fail(err, LSTM_ERR_FORMAT,
                      "%s: id %zu: expected a string or an array of byte values", what, id);
            goto fail;
        }
        int dup = vocab_find(v, s, len);
        if (dup >= 0) {
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: id %zu repeats the entry of id %d", what, id,
                      dup);
            goto fail;
        }
        if (vocab_add_count(v, s, len, 0) < 0) {
            lstm_fail(err, LSTM_ERR_NOMEM, "%s: out of memory", what);
            goto fail;
        }
    }
    free(bytes);
    json_decref(root);
    lstm_ok(err);
    return v;
fail:
    free(bytes);
    vocab_free(v);
    json_decref(root);
    return NULL;
}
