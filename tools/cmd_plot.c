/* cmd_plot.c - lstm plot: draws a training log (the JSON lines that
 * `lstm train --log` writes) as an SVG: training and validation loss in one
 * panel, the validation metric with its best point in the other. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const char *V = "plot";

enum { MAX_POINTS = 2000, MARKERS_UPTO = 60 }; /* per series */

/* Values beyond this are skipped like NaN and inf: they would only flatten
 * every other point, and it keeps the axis arithmetic finite. */
#define HUGE_VALUE 1e100

/* One curve, in file order (a resumed run may step back: drawn as written).
 * A log may hold several runs (lstm train --log-append): run[i] says which
 * point belongs to which, and each run is drawn as a line of its own. */
typedef struct {
    double *x, *y;
    int *run;
    size_t n, cap;
} series;

typedef struct {
    series train, vloss, metric;
    char task[128], metric_name[128];
    long events; /* train and valid events */
    int run;     /* the run being read: a "start" event that is not a resume begins one */
    int runs;    /* runs with points */
} plot_log;

/* Appends (x, y); a non-finite or huge value is skipped, not an error.
 * Returns -1 when out of memory. */
static int series_add(series *s, double x, double y, int run) {
    if (!(fabs(x) <= HUGE_VALUE) || !(fabs(y) <= HUGE_VALUE))
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx)
            return -1;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny)
            return -1;
        s->y = ny;
        int *nr = realloc(s->run, cap * sizeof *nr);
        if (!nr)
            return -1;
        s->run = nr;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->run[s->n] = run;
    s->y[s->n++] = y;
    return 0;
}

static void series_free(series *s) {
    free(s->x);
    free(s->y);
    free(s->run);
}

/* The field as a double, NaN when it is absent or not a number. */
static double number_or_nan(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void copy_string(char *dst, size_t n, const json_t *v) {
    if (json_is_string(v))
        snprintf(dst, n, "%s", json_string_value(v));
}

/* Python writes NaN, Infinity and -Infinity, C's printf nan, inf and -nan;
 * none of them is JSON. Returns a malloc'ed copy of line s (n bytes) with
 * such bare words outside strings replaced by null (so the value is
 * skipped), setting *outn; NULL when there are none. */
static char *nonfinite_to_null(const char *s, size_t n, size_t *outn) {
    static const char *words[] = {"nan", "-nan", "+nan", "inf", "-inf", "+inf",
                                  "infinity", "-infinity", "+infinity"};
    char *out = malloc(2 * n + 1); /* a word of 3 or more bytes becomes 4 */
    size_t o = 0, i = 0;
    int in_str = 0, found = 0;
    if (!out)
        return NULL;
    while (i < n) {
        char c = s[i];
        if (in_str) {
            out[o++] = s[i++];
            if (c == '\\' && i < n)
                out[o++] = s[i++];
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
            out[o++] = s[i++];
        } else if (isalpha((unsigned char)c) || c == '-' || c == '+') {
            size_t j = i, len;
            while (j < n && (isalpha((unsigned char)s[j]) || s[j] == '-' || s[j] == '+'))
                j++;
            len = j - i;
            int match = 0;
            for (size_t w = 0; w < sizeof words / sizeof *words && !match; w++)
                match = strlen(words[w]) == len && strncasecmp(s + i, words[w], len) == 0;
            match = match && (i == 0 || !(isalnum((unsigned char)s[i - 1]) || s[i - 1] == '.'));
            memcpy(out + o, match ? "null" : s + i, match ? 4 : len);
            o += match ? 4 : len;
            found |= match;
            i = j;
        } else {
            out[o++] = s[i++];
        }
    }
    if (!found) {
        free(out);
        return NULL;
    }
    *outn = o;
    return out;
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    default: return "an object";
    }
}

/* Reads the log from f (name: how messages call it) into lg, with x the
 * step or, when use_time, the time of each event. Returns 0, or 1 after
 * printing an error. lg owns its series whatever the outcome. */
static int read_log(FILE *f, const char *name, int use_time, plot_log *lg) {
    const char *xkey = use_time ? "time" : "step";
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int status = 1;
    while ((got = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        int complete = len > 0 && line[len - 1] == '\n';
        lineno++;
        size_t k = 0;
        while (k < len && isspace((unsigned char)line[k]))
            k++;
        if (k == len)
            continue; /* blank lines are harmless */
        json_error_t je;
        json_t *o = json_loadb(line, len, JSON_DECODE_ANY, &je);
        if (!o) {
            size_t fixed_len;
            char *fixed = nonfinite_to_null(line, len, &fixed_len);
            if (fixed) { /* the error, if any, is now elsewhere in the line */
                o = json_loadb(fixed, fixed_len, JSON_DECODE_ANY, &je);
                je.column = 0; /* counted in the copy: not the file's */
                free(fixed);
            }
        }
        if (!o && !complete) {
            /* the trainer may be writing it right now */
            cli_error(V, "%s: line %ld: ignoring an incomplete last line", name, lineno);
            break;
        }
        if (!o) {
            if (je.column > 0)
                cli_error(V, "%s: line %ld: not a JSON object: %s (column %d)", name, lineno,
                          je.text, je.column);
            else
                cli_error(V, "%s: line %ld: not a JSON object: %s", name, lineno, je.text);
            goto out;
        }
        if (!json_is_object(o)) {
            cli_error(V, "%s: line %ld: not a JSON object: found %s", name, lineno,
                      json_type_name(o));
            json_decref(o);
            goto out;
        }
        const char *ev = json_string_value(json_object_get(o, "event"));
        int train = ev && strcmp(ev, "train") == 0, valid = ev && strcmp(ev, "valid") == 0;
        if (ev && strcmp(ev, "start") == 0) {
            copy_string(lg->task, sizeof lg->task, json_object_get(o, "task"));
            /* a new run, unless it resumes the last one (the trainer says so) */
            const char *msg = json_string_value(json_object_get(o, "message"));
            if (lg->events > 0 && !(msg && strstr(msg, "(resumed)")))
                lg->run++;
        }
        if (train || valid) {
            const json_t *xv = json_object_get(o, xkey);
            if (!json_is_number(xv)) {
                cli_error(V, "%s: line %ld: %s event without a numeric \"%s\"", name, lineno, ev,
                          xkey);
                json_decref(o);
                goto out;
            }
            double x = json_number_value(xv);
            int err = series_add(train ? &lg->train : &lg->vloss, x, number_or_nan(o, "loss"),
                                 lg->run);
            lg->runs = lg->run + 1;
            if (valid) {
                copy_string(lg->metric_name, sizeof lg->metric_name, json_object_get(o, "metric"));
                err |= series_add(&lg->metric, x, number_or_nan(o, "value"), lg->run);
            }
            lg->events++;
            if (err) {
                cli_error(V, "out of memory");
                json_decref(o);
                goto out;
            }
        }
        json_decref(o); /* other events and fields: not ours to judge */
    }
    if (ferror(f)) {
        cli_error(V, "%s: cannot read: %s", name, strerror(errno));
        goto out;
    }
    if (lg->events == 0) {
        cli_error(V, "%s: no training events to plot", name);
        goto out;
    }
    status = 0;
out:
    free(line);
    return status;
}

/* ---- drawing ---------------------------------------------------------- */

typedef struct {
    double lo, hi, step; /* the ends, and the distance between ticks */
} axis;

/* The smallest of 1, 2, 5 times a power of ten that is >= x > 0. */
static double nice_step(double x) {
    double p = pow(10, floor(log10(x))), m = x / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/* An axis over [lo, hi] with ticks about (hi - lo) / target apart. An x axis
 * (round) has its ends rounded out to ticks; a y axis gets a margin instead,
 * so that no point lies on the frame and a spike does not add a tick. One
 * value (or lo > hi: none) gets a band around it, so that the scale never
 * divides by zero. */
static axis make_axis(double lo, double hi, int target, int round) {
    if (lo > hi)
        lo = 0, hi = 1;
    if (lo == hi) {
        double d = fabs(lo) * 0.1;
        lo -= d ? d : 1;
        hi += d ? d : 1;
    } else if (!round) {
        double d = (hi - lo) * 0.04;
        lo -= d, hi += d;
    }
    axis a = {lo, hi, nice_step((hi - lo) / target)};
    if (round) {
        a.lo = floor(lo / a.step) * a.step;
        a.hi = ceil(hi / a.step) * a.step;
        if (!(a.hi > a.lo)) /* lost to rounding at extreme magnitudes */
            a.lo = lo, a.hi = hi;
    }
    return a;
}

/* The ticks of an axis are the multiples of its step within [lo, hi]:
 * k * step for k in [*k0, *k0 + n). Returns n (none when absurd). */
static int ticks(const axis *a, double *k0) {
    *k0 = ceil(a->lo / a->step - 1e-9);
    double n = floor(a->hi / a->step + 1e-9) - *k0 + 1;
    return n >= 1 && n <= 100 ? (int)n : 0;
}

/* A tick label: as many decimals as the step needs; k or M for thousands
 * or millions when the step is that coarse. */
static void fmt_tick(char *buf, size_t n, double v, double step) {
    const char *suffix = "";
    if (step >= 1e6 && step < 1e15)
        v /= 1e6, step /= 1e6, suffix = "M";
    else if (step >= 1e4 && step < 1e15)
        v /= 1e3, step /= 1e3, suffix = "k";
    if (fabs(v) < step * 1e-6) { /* not -0, 0k or 1e-17 */
        snprintf(buf, n, "0");
        return;
    }
    int dec = step < 1 ? (int)ceil(-log10(step) - 1e-9) : 0;
    if (step >= 1e15 || dec > 15)
        snprintf(buf, n, "%.3g", v);
    else
        snprintf(buf, n, "%.*f%s", dec, v, suffix);
}

/* A value in a label: four significant digits, whole numbers when large. */
static void fmt_value(char *buf, size_t n, double v) {
    if (fabs(v) >= 1e4 && fabs(v) < 1e15)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%.4g", v);
}

/* The length of the valid UTF-8 sequence at p that XML allows, or 0. */
static int utf8_len(const unsigned char *p) {
    int n;
    unsigned cp;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2, cp = p[0] & 0x1F;
    else if ((p[0] & 0xF0) == 0xE0)
        n = 3, cp = p[0] & 0x0F;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4, cp = p[0] & 0x07;
    else
        return 0;
    for (int i = 1; i < n; i++) { /* stops at the NUL: it is not 10xxxxxx */
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || cp == 0xFFFE || cp == 0xFFFF)
        return 0;
    return n;
}

/* Writes s as XML character data: markup escaped; control characters and
 * bytes that are not UTF-8 (a title or file name can hold anything)
 * replaced, so that the file stays well-formed. */
static void put_text(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int len = *p >= 0x80 ? utf8_len(p) : 1;
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if (*p < 0x20)
                fputc(*p == '\t' || *p == '\n' || *p == '\r' ? ' ' : '?', f);
            else if (len)
                fwrite(p, 1, (size_t)len, f);
            else
                fputc('?', f);
        }
        p += len ? len : 1;
    }
}

/* The page: 900 x 600, two panels stacked over one x axis. */
enum { PAGE_W = 900, PAGE_H = 600, LEFT = 84, RIGHT = 872 };

typedef struct {
    double top, bottom; /* pixels; left and right are LEFT and RIGHT */
    axis ax, ay;
} panel;

static double px(const panel *p, double x) {
    return LEFT + (x - p->ax.lo) / (p->ax.hi - p->ax.lo) * (RIGHT - LEFT);
}

static double py(const panel *p, double y) {
    return p->bottom - (y - p->ay.lo) / (p->ay.hi - p->ay.lo) * (p->bottom - p->top);
}

static void y_range(const series *s, double *lo, double *hi) {
    for (size_t i = 0; i < s->n; i++) {
        *lo = fmin(*lo, s->y[i]);
        *hi = fmax(*hi, s->y[i]);
    }
}

/* Grid, frame, ticks and their labels; y ticks only when `yticks`. */
static void draw_axes(FILE *f, const panel *p, int yticks, const char *ytitle) {
    char b[64];
    double kx, ky;
    int nx = ticks(&p->ax, &kx), ny = ticks(&p->ay, &ky);
    fprintf(f, "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    for (int i = 0; i < nx; i++) {
        double x = px(p, (kx + i) * p->ax.step);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, p->top, x,
                p->bottom);
    }
    for (int i = 0; yticks && i < ny; i++) {
        double y = py(p, (ky + i) * p->ay.step);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", LEFT, y, RIGHT, y);
    }
    fprintf(f, "</g>\n<g font-size=\"11\" fill=\"#333\">\n");
    for (int i = 0; i < nx; i++) {
        double v = (kx + i) * p->ax.step;
        fmt_tick(b, sizeof b, v, p->ax.step);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px(p, v),
                p->bottom + 16, b);
    }
    for (int i = 0; yticks && i < ny; i++) {
        double v = (ky + i) * p->ay.step;
        fmt_tick(b, sizeof b, v, p->ay.step);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", LEFT - 6,
                py(p, v) + 4, b);
    }
    fprintf(f, "</g>\n");
    if (ytitle) {
        double cy = (p->top + p->bottom) / 2;
        fprintf(f, "<text x=\"20\" y=\"%.1f\" transform=\"rotate(-90 20 %.1f)\" "
                   "text-anchor=\"middle\">", cy, cy);
        put_text(f, ytitle);
        fprintf(f, "</text>\n");
    }
}

static void draw_frame(FILE *f, const panel *p) {
    fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\"/>\n", LEFT, p->top, RIGHT - LEFT, p->bottom - p->top);
}

static void put_point(FILE *f, const panel *p, const series *s, size_t i) {
    fprintf(f, "%.1f,%.1f ", px(p, s->x[i]), py(p, s->y[i]));
}

/* One series as a polyline, downsampled to at most MAX_POINTS by keeping
 * the lowest and the highest point of each run of consecutive points, so
 * that spikes survive; a few points also get a dot each. */
/* The points [a, b) of s as one line: all of them, or the lowest and the
 * highest of each of MAX_POINTS / 2 bins when there are more. */
static void draw_line(FILE *f, const panel *p, const series *s, size_t a, size_t b,
                      const char *cls, const char *color, int earlier) {
    size_t n = b - a;
    fprintf(f, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" "
               "stroke-linejoin=\"round\"%s points=\"", cls, color,
            earlier ? " stroke-dasharray=\"5 3\" stroke-opacity=\"0.55\"" : "");
    if (n <= MAX_POINTS) {
        for (size_t i = a; i < b; i++)
            put_point(f, p, s, i);
    } else {
        size_t nb = MAX_POINTS / 2;
        for (size_t k = 0; k < nb; k++) {
            size_t i0 = a + n * k / nb, i1 = a + n * (k + 1) / nb, lo = i0, hi = i0;
            for (size_t i = i0; i < i1; i++) {
                if (s->y[i] < s->y[lo])
                    lo = i;
                if (s->y[i] > s->y[hi])
                    hi = i;
            }
            put_point(f, p, s, lo < hi ? lo : hi);
            if (lo != hi)
                put_point(f, p, s, lo < hi ? hi : lo);
        }
    }
    fprintf(f, "\"/>\n");
}

/* A series, one line per run: the last run solid, earlier ones dashed. */
static void draw_series(FILE *f, const panel *p, const series *s, const char *cls,
                        const char *color) {
    if (!s->n)
        return;
    int last = s->run[s->n - 1];
    for (size_t a = 0; a < s->n;) {
        size_t b = a + 1;
        while (b < s->n && s->run[b] == s->run[a])
            b++;
        draw_line(f, p, s, a, b, cls, color, s->run[a] != last);
        a = b;
    }
    for (size_t i = 0; s->n <= MARKERS_UPTO && i < s->n; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", px(p, s->x[i]),
                py(p, s->y[i]), color);
}

static void draw_note(FILE *f, const panel *p, const char *msg) {
    fprintf(f, "<text class=\"note\" x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" "
               "fill=\"#888\">%s</text>\n", (LEFT + RIGHT) / 2, (p->top + p->bottom) / 2 + 5, msg);
}

static void draw_header(FILE *f, const panel *p, const char *what, const char *name) {
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">%s", LEFT,
            p->top - 9, what);
    if (name)
        put_text(f, name);
    fprintf(f, "</text>\n");
}

/* Whether larger is better for this metric (accuracy and the like) rather
 * than smaller (bpc, perplexity, losses, error rates). */
static int higher_is_better(const char *m) {
    return strstr(m, "acc") || strstr(m, "f1") || strstr(m, "auc") || strstr(m, "precision") ||
           strstr(m, "recall");
}

typedef struct {
    const char *title, *logname;
    int use_time;
} plot_opts;

static void draw(FILE *f, const plot_log *lg, const plot_opts *po) {
    const series *all[3] = {&lg->train, &lg->vloss, &lg->metric};
    double xlo = INFINITY, xhi = -INFINITY;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < all[k]->n; i++) {
            xlo = fmin(xlo, all[k]->x[i]);
            xhi = fmax(xhi, all[k]->x[i]);
        }
    axis ax = make_axis(xlo, xhi, 8, 1);
    const char *metric = lg->metric_name[0] ? lg->metric_name : "metric";

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\" "
               "font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
               "<text class=\"title\" x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" "
               "font-weight=\"bold\">", PAGE_W, PAGE_H, PAGE_W, PAGE_H, PAGE_W / 2);
    if (po->title) {
        put_text(f, po->title);
    } else {
        put_text(f, po->logname);
        if (lg->task[0]) {
            fputs(" \xe2\x80\x94 ", f); /* an em dash */
            put_text(f, lg->task);
        }
    }
    fprintf(f, "</text>\n");

    /* panel 1: the losses */
    panel p1 = {62, 272, ax, {0, 1, 1}};
    double lo = INFINITY, hi = -INFINITY;
    y_range(&lg->train, &lo, &hi);
    y_range(&lg->vloss, &lo, &hi);
    p1.ay = make_axis(lo, hi, 5, 0);
    int any_loss = lg->train.n || lg->vloss.n;
    draw_header(f, &p1, "Loss", NULL);
    draw_axes(f, &p1, any_loss, "loss (nats per token)");
    draw_series(f, &p1, &lg->train, "train-loss", "#1f77b4");
    draw_series(f, &p1, &lg->vloss, "valid-loss", "#ff7f0e");
    draw_frame(f, &p1);
    if (!any_loss)
        draw_note(f, &p1, "no finite loss values");
    static const struct { const char *label, *color; } legend[2] = {
        {"training", "#1f77b4"}, {"validation", "#ff7f0e"}};
    for (int k = 0; k < 2; k++) {
        double x = RIGHT - 190 + 95 * k, y = p1.top - 13;
        if (!all[k]->n)
            continue;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2.5\"/>\n<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                x, y, x + 20, y, legend[k].color, x + 25, y + 4, legend[k].label);
    }

    if (lg->runs > 1)
        fprintf(f, "<text class=\"runs\" x=\"%d\" y=\"%.1f\" font-size=\"11\" fill=\"#666\">"
                   "%d runs in this log: the last solid, earlier ones dashed</text>\n",
                LEFT + 60, p1.top - 9, lg->runs);

    /* panel 2: the validation metric and its best point */
    panel p2 = {330, 530, ax, {0, 1, 1}};
    const series *m = &lg->metric;
    draw_header(f, &p2, "Validation ", m->n ? metric : NULL);
    if (m->n) {
        int higher = higher_is_better(metric);
        size_t best = 0;
        lo = INFINITY, hi = -INFINITY;
        y_range(m, &lo, &hi);
        for (size_t i = 1; i < m->n; i++)
            if (higher ? m->y[i] > m->y[best] : m->y[i] < m->y[best])
                best = i;
        p2.ay = make_axis(lo, hi, 5, 0);
        /* room for the label on the side away from the curve: the best point
         * at least r of the height from that edge */
        double r = 26 / (p2.bottom - p2.top), yb = m->y[best];
        if (higher && py(&p2, yb) - p2.top < 26)
            p2.ay.hi = (yb - r * p2.ay.lo) / (1 - r);
        else if (!higher && p2.bottom - py(&p2, yb) < 26)
            p2.ay.lo = (yb - r * p2.ay.hi) / (1 - r);
        draw_axes(f, &p2, 1, metric);
        draw_series(f, &p2, m, "metric", "#2ca02c");
        draw_frame(f, &p2);
        double bx = px(&p2, m->x[best]), by = py(&p2, m->y[best]);
        int right_half = bx > (LEFT + RIGHT) / 2.0;
        char v[64], x[64];
        fmt_value(v, sizeof v, m->y[best]);
        if (po->use_time)
            snprintf(x, sizeof x, "%.1f s", m->x[best]);
        else if (m->x[best] == floor(m->x[best]) && fabs(m->x[best]) < 1e15)
            snprintf(x, sizeof x, "step %.0f", m->x[best]);
        else
            snprintf(x, sizeof x, "step %g", m->x[best]);
        fprintf(f, "<circle class=\"best\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#d62728\" "
                   "stroke=\"white\" stroke-width=\"1.5\"/>\n"
                   "<text class=\"best\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" fill=\"#d62728\" "
                   "font-weight=\"bold\">best %s ", bx, by, bx + (right_half ? 8 : -8),
                higher ? by - 10 : by + 19, right_half ? "end" : "start", v);
        put_text(f, metric);
        fprintf(f, " at %s</text>\n", x);
    } else {
        draw_axes(f, &p2, 0, NULL);
        draw_frame(f, &p2);
        draw_note(f, &p2, lg->vloss.n ? "no validation metric" : "no validation");
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n</svg>\n",
            (LEFT + RIGHT) / 2, PAGE_H - 22, po->use_time ? "time (s)" : "step");
}

/* Draws the SVG in memory, then writes it with lstm_write_file_atomic, so
 * that a reader (a browser reloading the file) never sees half a plot; a
 * pipe or /dev/stdout is written in place, a symbolic link keeps pointing
 * at the plot. Returns 0, or 1 after an error. */
static int write_svg(const char *out, const plot_log *lg, const plot_opts *po) {
    struct stat st; /* the library would only say that its rename failed */
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return cli_error(V, "%s: cannot write: %s", out, strerror(EISDIR));
    char *svg = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&svg, &len);
    if (!f)
        return cli_error(V, "out of memory");
    draw(f, lg, po);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(svg);
        return cli_error(V, "out of memory drawing %s", out);
    }
    lstm_error err;
    int status = lstm_write_file_atomic(out, svg, len, &err) ? cli_error(V, "%s", err.msg) : 0;
    free(svg);
    return status;
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = NULL, *xs = "step";
    cli_opt opts[] = {
        {"out", OPT_STR, &out, "FILE.svg", "the SVG to write (required)"},
        {"title", OPT_STR, &title, "T", "the title (default: the log's name and task)"},
        {"x", OPT_STR, &xs, "step|time", "the x axis: steps or seconds (step)"},
        OPT_END};
    const char *pos[1];
    int npos;
    int r = cli_parse(V, "lstm plot LOG --out FILE.svg [--title T] [--x step|time]",
                      "Draws the training log that 'lstm train --log LOG' writes (JSON lines; '-'\n"
                      "reads standard input) as an SVG: training and validation loss above,\n"
                      "the validation metric with its best value marked below. Non-finite\n"
                      "values are skipped; long logs are thinned to 2000 points a curve.",
                      opts, argc, argv, pos, 1, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 1)
        return cli_error(V, "expected a LOG file (see lstm plot --help)");
    if (!out)
        return cli_error(V, "--out FILE.svg is required");
    if (strcmp(xs, "step") != 0 && strcmp(xs, "time") != 0)
        return cli_error(V, "--x must be step or time, not '%s'", xs);

    int use_stdin = strcmp(pos[0], "-") == 0;
    const char *name = use_stdin ? "<stdin>" : pos[0];
    FILE *f = use_stdin ? stdin : fopen(pos[0], "r");
    if (!f)
        return cli_error(V, "%s: cannot open: %s", name, strerror(errno));
    plot_log lg;
    memset(&lg, 0, sizeof lg);
    int status = read_log(f, name, strcmp(xs, "time") == 0, &lg);
    if (!use_stdin)
        fclose(f);
    if (status == 0) {
        const char *base = strrchr(name, '/');
        plot_opts po = {title, base && base[1] ? base + 1 : name, strcmp(xs, "time") == 0};
        status = write_svg(out, &lg, &po);
    }
    series_free(&lg.train);
    series_free(&lg.vloss);
    series_free(&lg.metric);
    return status;
}
