/* onednn_lstm.c - times nn.LSTM's work with oneDNN 2.6's LSTM primitive, with the
 * options and result line of `lstm bench`, and checks it against a plain reference.
 *
 *   cc -O2 -fopenmp bench/onednn_lstm.c -o build/bench/onednn_lstm -ldnnl -lm
 *   build/bench/onednn_lstm --mode train --input 512 --hidden 512 --batch 64 --steps 25 --json
 *   build/bench/onednn_lstm --check      # oneDNN against the double reference below
 *
 * Legend: T steps, B batch, I input, H hidden, P projection (0: none), Ho = P or H,
 * D directions, L layers, In the input size of a layer (I, then D*Ho).
 *
 * How PyTorch's nn.LSTM maps onto the primitive:
 * - gate order i, f, g (oneDNN's c~), o is the same; weight_ih_l{k} (4H, In) and
 *   weight_hh_l{k} (4H, Ho) are the user layout ldgoi, weight_hr_l{k} (P, H) is ldoi;
 *   the primitive picks its own weight layouts (format_tag_any) and explicit reorders
 *   go from and to the user layout. oneDNN has one bias: b_ih + b_hh (both get its
 *   gradient).
 * - oneDNN's layer dimension stacks each direction on its own (a layer's input is
 *   the previous layer's output in the same direction, Ho wide; it rejects 2*Ho),
 *   while PyTorch's layer l reads both directions of layer l-1. So a bidirectional
 *   model is one primitive per layer, and a unidirectional one puts the layers
 *   whose input size is Ho into the layer dimension of one primitive (layer 0
 *   alone when I != Ho; --split: one primitive per layer always).
 * - oneDNN 2.6.3's unidirectional backward returns a wrong diff_weights_iter when no
 *   initial state is given (bidirectional is right), so a zero src_iter/src_iter_c
 *   and their diffs are always passed (--omit-state leaves them out, to show the
 *   bug with --check).
 * - Training pays the weight reorders: user layout -> the forward's layout and ->
 *   the backward's layout, and the weight gradients back to the user layout, every
 *   iteration, as a training loop that updates the weights must. Inference and
 *   stream reorder the weights once, outside the timed loop.
 * Threads: Debian's libdnnl is the OpenMP build; --threads sets omp_set_num_threads,
 * and OpenMP's default (active) waiting is left alone, as oneDNN is fastest so.
 * --bf16: oneDNN's bfloat16 LSTM, with the data types its bf16 configuration accepts:
 * source, destination, h states and weights bf16; biases, c states and every diff
 * (weights included) f32. The input and dy are rounded once, outside the timing. Only
 * the f32 configuration is checked against the reference (--check).
 * --int8: oneDNN's int8 LSTM (inference and stream only, no projection): source,
 * destination and h states u8 with one scale and shift for all activations
 * (rnn_data_qparams: static quantization, fixed before the run, where lstm's int8
 * quantizes every row as it comes), weights s8 with a scale per gate and output
 * channel (rnn_weights_qparams, mask (1 << 3) + (1 << 4)), quantized by the weight
 * reorder, once, outside the timing; c states and biases f32. The input is
 * converted once, outside the timing.
 */
#include <dnnl.h>
#include <dnnl_debug.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define DN(call) dn_check((call), #call, __LINE__)

static void dn_check(dnnl_status_t s, const char *what, int line) {
    if (s != dnnl_success) {
        fprintf(stderr, "onednn_lstm: line %d: %s: %s\n", line, what, dnnl_status2str(s));
        exit(1);
    }
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "onednn_lstm: out of memory\n");
        exit(1);
    }
    return p;
}

/* ---- random numbers (splitmix64), state passed explicitly ---- */

typedef struct { uint64_t s; } rng;

static double rng_uniform(rng *r) { /* [0, 1) */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

static double rng_normal(rng *r) {
    double u = rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2 * log(1 - u)) * cos(6.283185307179586 * v);
}

/* ---- the oneDNN model: one primitive per block of layers ---- */

enum { W_LAYER, W_ITER, W_PROJ, NW };
enum { TRAIN, INFER, STREAM };

typedef struct { dnnl_primitive_t p; dnnl_memory_t from, to; } reorder; /* p NULL: none */

/* Layers l0 .. l0+nl-1, all with input size in. Weights w[] and gradients dw[] are
 * in the user (PyTorch) layout, (nl, D, 4H, in), (nl, D, 4H, Ho), (nl, D, Ho, H);
 * fw[], bw[], bdw[] are the forward's weights, the backward's weights and its
 * weight gradients in the layouts the primitives chose (aliases when equal). */
typedef struct {
    int l0, nl, in;
    dnnl_memory_t w[NW], dw[NW], bias, dbias;
    dnnl_memory_t fw[NW], bw[NW], bdw[NW];
    reorder fw_re[NW], bw_re[NW], bdw_re[NW];
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t src, dst, iter[2], iter_c[2], ws;      /* iter[0]: src_iter, [1]: dst_iter */
    dnnl_memory_t dsrc, ddst, dsrc_iter, dsrc_iter_c, ddst_iter, ddst_iter_c;
    dnnl_exec_arg_t fa[2][16], ba[24]; /* fa[1]: the state buffers swapped (stream) */
    int nfa, nba;
} block;

typedef struct {
    int mode, I, H, L, B, T, D, P, Ho, nb, omit_state;  /* T: steps per call, 1 for stream */
    block *blk;
    dnnl_engine_t eng;
    dnnl_stream_t st;
    long step; /* stream: calls so far, whose parity picks the state buffers */
    dnnl_memory_t *mems;
    dnnl_primitive_t *prims;
    int nmem, nprim;
} model;

/* The data type of the activations and weights: f32, or bf16 with --bf16 (biases,
 * cell states and every gradient stay f32, as oneDNN's bf16 LSTM wants them). */
static dnnl_data_type_t act_dt = dnnl_f32;
/* --int8: the quantization attributes of the primitive and the weight reorders */
static int int8_mode;
static dnnl_primitive_attr_t q_attr;

static dnnl_memory_desc_t md_dt(int nd, const dnnl_dims_t dims, dnnl_data_type_t dt,
                                dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md;
    DN(dnnl_memory_desc_init_by_tag(&md, nd, dims, dt, tag));
    return md;
}

static dnnl_memory_desc_t md_tag(int nd, const dnnl_dims_t dims, dnnl_format_tag_t tag) {
    return md_dt(nd, dims, dnnl_f32, tag);
}

static const dnnl_memory_desc_t *md_of(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md;
    DN(dnnl_memory_get_memory_desc(m, &md));
    return md;
}

static float *data(dnnl_memory_t m) {
    void *p;
    DN(dnnl_memory_get_data_handle(m, &p));
    return p;
}

static size_t nbytes(dnnl_memory_t m) { return dnnl_memory_desc_get_size(md_of(m)); }

/* A zeroed memory the model owns, or NULL for an empty descriptor. */
static dnnl_memory_t mem_new(model *m, const dnnl_memory_desc_t *md) {
    if (!md || md->ndims == 0)
        return NULL;
    dnnl_memory_t mem;
    DN(dnnl_memory_create(&mem, md, m->eng, DNNL_MEMORY_ALLOCATE));
    memset(data(mem), 0, dnnl_memory_desc_get_size(md));
    m->mems = realloc(m->mems, sizeof *m->mems * (m->nmem + 1));
    return m->mems[m->nmem++] = mem;
}

static dnnl_primitive_t prim_new(model *m, const_dnnl_primitive_desc_t pd) {
    dnnl_primitive_t p;
    DN(dnnl_primitive_create(&p, pd));
    m->prims = realloc(m->prims, sizeof *m->prims * (m->nprim + 1));
    return m->prims[m->nprim++] = p;
}

/* The memory an argument of pd wants: user itself when the layouts agree (no reorder),
 * else a new one with a reorder from user (to_user = 0) or to user (to_user = 1). */
static dnnl_memory_t layout_for(model *m, const_dnnl_primitive_desc_t pd, int arg, dnnl_memory_t user,
                                int to_user, reorder *re) {
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    re->p = NULL;
    if (!user || dnnl_memory_desc_equal(want, md_of(user)))
        return user;
    dnnl_memory_t mem = mem_new(m, want);
    re->from = to_user ? mem : user;
    re->to = to_user ? user : mem;
    dnnl_primitive_desc_t rpd;
    DN(dnnl_reorder_primitive_desc_create(&rpd, md_of(re->from), m->eng, md_of(re->to), m->eng,
                                          want->data_type == dnnl_s8 ? q_attr : NULL));
    re->p = prim_new(m, rpd);
    DN(dnnl_primitive_desc_destroy(rpd));
    return mem;
}

static void run_reorder(model *m, const reorder *re) {
    if (!re->p)
        return;
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, re->from}, {DNNL_ARG_TO, re->to}};
    DN(dnnl_primitive_execute(re->p, m->st, 2, a));
}

static void arg(dnnl_exec_arg_t *a, int *n, int what, dnnl_memory_t mem) {
    if (mem)
        a[(*n)++] = (dnnl_exec_arg_t){what, mem};
}

/* Builds the descriptors, primitives, memories and argument lists of block b.
 * src is the block's input (T, B, in) and dsrc its gradient (train only). */
static void block_init(model *m, block *b, dnnl_memory_t src, dnnl_memory_t dsrc) {
    int T = m->T, B = m->B, D = m->D, H = m->H, Ho = m->Ho, nl = b->nl, in = b->in;
    dnnl_dims_t d_src = {T, B, in}, d_dst = {T, B, D * Ho}, d_iter = {nl, D, B, Ho},
                d_iter_c = {nl, D, B, H}, d_wl = {nl, D, in, 4, H}, d_wi = {nl, D, Ho, 4, H},
                d_wp = {nl, D, H, Ho}, d_bias = {nl, D, 4, H};
    dnnl_memory_desc_t src_md = md_dt(3, d_src, act_dt, dnnl_tnc), dst_md = md_dt(3, d_dst, act_dt, dnnl_tnc),
                       iter_md = md_dt(4, d_iter, act_dt, dnnl_ldnc), iter_c_md = md_tag(4, d_iter_c, dnnl_ldnc),
                       bias_md = md_tag(4, d_bias, dnnl_ldgo),
                       wl_any = md_dt(5, d_wl, act_dt, dnnl_format_tag_any),
                       wi_any = md_dt(5, d_wi, act_dt, dnnl_format_tag_any),
                       wp_any = md_dt(4, d_wp, act_dt, dnnl_format_tag_any),
                       dsrc_md = md_tag(3, d_src, dnnl_tnc), ddst_md = md_tag(3, d_dst, dnnl_tnc),
                       diter_md = md_tag(4, d_iter, dnnl_ldnc),
                       dwl_any = md_tag(5, d_wl, dnnl_format_tag_any),
                       dwi_any = md_tag(5, d_wi, dnnl_format_tag_any),
                       dwp_any = md_tag(4, d_wp, dnnl_format_tag_any);
    if (int8_mode) { /* u8 activations and h states, s8 weights; c and bias f32 */
        src_md = md_dt(3, d_src, dnnl_u8, dnnl_tnc);
        dst_md = md_dt(3, d_dst, dnnl_u8, dnnl_tnc);
        iter_md = md_dt(4, d_iter, dnnl_u8, dnnl_ldnc);
        wl_any = md_dt(5, d_wl, dnnl_s8, dnnl_format_tag_any);
        wi_any = md_dt(5, d_wi, dnnl_s8, dnnl_format_tag_any);
    }
    const dnnl_memory_desc_t *wp = m->P ? &wp_any : NULL;
    const dnnl_memory_desc_t *si = m->omit_state ? NULL : &iter_md, *sic = m->omit_state ? NULL : &iter_c_md;
    const dnnl_memory_desc_t *dsi = m->omit_state ? NULL : &diter_md;
    dnnl_rnn_direction_t dir = D == 2 ? dnnl_bidirectional_concat : dnnl_unidirectional_left2right;

    /* the user tensors, in PyTorch's layout */
    /* int8: oneDNN 2.6 quantizes weights only from ldigo (its reorder from ldgoi to
     * s8 is unimplemented); the random weights then land transposed, which changes
     * nothing timed */
    dnnl_format_tag_t wtag = int8_mode ? dnnl_ldigo : dnnl_ldgoi;
    dnnl_memory_desc_t wl_user = md_tag(5, d_wl, wtag), wi_user = md_tag(5, d_wi, wtag),
                       wp_user = md_tag(4, d_wp, dnnl_ldoi);
    b->w[W_LAYER] = mem_new(m, &wl_user);
    b->w[W_ITER] = mem_new(m, &wi_user);
    b->w[W_PROJ] = m->P ? mem_new(m, &wp_user) : NULL;
    b->bias = mem_new(m, &bias_md);
    b->src = src;
    b->dst = mem_new(m, &dst_md);
    for (int k = 0; k < 2; k++) {
        b->iter[k] = mem_new(m, &iter_md);
        b->iter_c[k] = mem_new(m, &iter_c_md);
    }

    dnnl_rnn_desc_t fd;
    DN(dnnl_lstm_forward_desc_init_v3(&fd, m->mode == TRAIN ? dnnl_forward_training : dnnl_forward_inference,
                                      dir, &src_md, si, sic, &wl_any, &wi_any, NULL, wp, &bias_md, &dst_md,
                                      &iter_md, &iter_c_md, 0));
    dnnl_primitive_desc_t fpd;
    DN(dnnl_primitive_desc_create(&fpd, &fd, int8_mode ? q_attr : NULL, m->eng, NULL));
    b->fwd = prim_new(m, fpd);
    static const int warg[NW] = {DNNL_ARG_WEIGHTS_LAYER, DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_WEIGHTS_PROJECTION};
    for (int k = 0; k < NW; k++)
        b->fw[k] = layout_for(m, fpd, warg[k], b->w[k], 0, &b->fw_re[k]);
    if (m->mode == TRAIN)
        b->ws = mem_new(m, dnnl_primitive_desc_query_md(fpd, dnnl_query_exec_arg_md, DNNL_ARG_WORKSPACE));
    for (int s = 0; s < 2; s++) {
        dnnl_exec_arg_t *a = b->fa[s];
        int n = 0;
        arg(a, &n, DNNL_ARG_SRC_LAYER, b->src);
        if (!m->omit_state) {
            arg(a, &n, DNNL_ARG_SRC_ITER, b->iter[s]);
            arg(a, &n, DNNL_ARG_SRC_ITER_C, b->iter_c[s]);
        }
        for (int k = 0; k < NW; k++)
            arg(a, &n, warg[k], b->fw[k]);
        arg(a, &n, DNNL_ARG_BIAS, b->bias);
        arg(a, &n, DNNL_ARG_DST_LAYER, b->dst);
        arg(a, &n, DNNL_ARG_DST_ITER, b->iter[!s]);
        arg(a, &n, DNNL_ARG_DST_ITER_C, b->iter_c[!s]);
        arg(a, &n, DNNL_ARG_WORKSPACE, b->ws);
        b->nfa = n;
    }
    if (m->mode != TRAIN) {
        DN(dnnl_primitive_desc_destroy(fpd));
        return;
    }

    dnnl_memory_desc_t dwl_user = wl_user, dwi_user = wi_user, dwp_user = wp_user;
    dnnl_rnn_desc_t bd;
    const dnnl_memory_desc_t *dwp = m->P ? &dwp_any : NULL;
    DN(dnnl_lstm_backward_desc_init_v3(&bd, dnnl_backward, dir, &src_md, si, sic, &wl_any, &wi_any, NULL, wp,
                                       &bias_md, &dst_md, &iter_md, &iter_c_md, &dsrc_md, dsi, sic, &dwl_any,
                                       &dwi_any, NULL, dwp, &bias_md, &ddst_md, &diter_md, &iter_c_md, 0));
    dnnl_primitive_desc_t bpd;
    DN(dnnl_primitive_desc_create(&bpd, &bd, NULL, m->eng, fpd));
    b->bwd = prim_new(m, bpd);
    b->dw[W_LAYER] = mem_new(m, &dwl_user);
    b->dw[W_ITER] = mem_new(m, &dwi_user);
    b->dw[W_PROJ] = m->P ? mem_new(m, &dwp_user) : NULL;
    b->dbias = mem_new(m, &bias_md);
    static const int dwarg[NW] = {DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER,
                                  DNNL_ARG_DIFF_WEIGHTS_PROJECTION};
    for (int k = 0; k < NW; k++) {
        b->bw[k] = layout_for(m, bpd, warg[k], b->w[k], 0, &b->bw_re[k]);
        b->bdw[k] = layout_for(m, bpd, dwarg[k], b->dw[k], 1, &b->bdw_re[k]);
    }
    b->dsrc = dsrc;
    b->ddst = mem_new(m, &ddst_md);
    if (!m->omit_state) {
        b->dsrc_iter = mem_new(m, &diter_md);
        b->dsrc_iter_c = mem_new(m, &iter_c_md);
    }
    b->ddst_iter = mem_new(m, &diter_md); /* zero: no loss on h_n, c_n */
    b->ddst_iter_c = mem_new(m, &iter_c_md);
    DN(dnnl_primitive_desc_destroy(bpd));
    DN(dnnl_primitive_desc_destroy(fpd));
}

static void block_bwd_args(model *m, block *b) {
    dnnl_exec_arg_t *a = b->ba;
    int n = 0;
    static const int warg[NW] = {DNNL_ARG_WEIGHTS_LAYER, DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_WEIGHTS_PROJECTION};
    static const int dwarg[NW] = {DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER,
                                  DNNL_ARG_DIFF_WEIGHTS_PROJECTION};
    arg(a, &n, DNNL_ARG_SRC_LAYER, b->src);
    if (!m->omit_state) {
        arg(a, &n, DNNL_ARG_SRC_ITER, b->iter[0]);
        arg(a, &n, DNNL_ARG_SRC_ITER_C, b->iter_c[0]);
        arg(a, &n, DNNL_ARG_DIFF_SRC_ITER, b->dsrc_iter);
        arg(a, &n, DNNL_ARG_DIFF_SRC_ITER_C, b->dsrc_iter_c);
    }
    for (int k = 0; k < NW; k++) {
        arg(a, &n, warg[k], b->bw[k]);
        arg(a, &n, dwarg[k], b->bdw[k]);
    }
    arg(a, &n, DNNL_ARG_BIAS, b->bias);
    arg(a, &n, DNNL_ARG_DIFF_BIAS, b->dbias);
    arg(a, &n, DNNL_ARG_DST_LAYER, b->dst);
    arg(a, &n, DNNL_ARG_DST_ITER, b->iter[1]);
    arg(a, &n, DNNL_ARG_DST_ITER_C, b->iter_c[1]);
    arg(a, &n, DNNL_ARG_WORKSPACE, b->ws);
    arg(a, &n, DNNL_ARG_DIFF_SRC_LAYER, b->dsrc);
    arg(a, &n, DNNL_ARG_DIFF_DST_LAYER, b->ddst);
    arg(a, &n, DNNL_ARG_DIFF_DST_ITER, b->ddst_iter);
    arg(a, &n, DNNL_ARG_DIFF_DST_ITER_C, b->ddst_iter_c);
    b->nba = n;
}

/* Pointers into the user tensors of layer l, direction d (PyTorch's shapes). */
static block *block_of(const model *m, int l) {
    for (int i = 0; i < m->nb; i++)
        if (l < m->blk[i].l0 + m->blk[i].nl)
            return &m->blk[i];
    return NULL;
}

static float *user_w(const model *m, int l, int d, int k, int grad) {
    block *b = block_of(m, l);
    size_t ld = (size_t)(l - b->l0) * m->D + d;
    size_t sz = k == W_LAYER ? (size_t)4 * m->H * b->in : k == W_ITER ? (size_t)4 * m->H * m->Ho
                                                                     : (size_t)m->Ho * m->H;
    return data(grad ? b->dw[k] : b->w[k]) + ld * sz;
}

static float *user_bias(const model *m, int l, int d, int grad) {
    block *b = block_of(m, l);
    return data(grad ? b->dbias : b->bias) + ((size_t)(l - b->l0) * m->D + d) * 4 * m->H;
}

/* Writes n floats into mem (through a reorder from f32 when mem is bf16). */
static void fill(model *m, dnnl_memory_t mem, const float *v, size_t n) {
    if (md_of(mem)->data_type == dnnl_f32) {
        memcpy(data(mem), v, sizeof(float) * n);
        return;
    }
    dnnl_memory_desc_t md = *md_of(mem);
    md.data_type = dnnl_f32;
    dnnl_memory_t tmp;
    DN(dnnl_memory_create(&tmp, &md, m->eng, (void *)v));
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t rp;
    DN(dnnl_reorder_primitive_desc_create(&rpd, &md, m->eng, md_of(mem), m->eng, NULL));
    DN(dnnl_primitive_create(&rp, rpd));
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, tmp}, {DNNL_ARG_TO, mem}};
    DN(dnnl_primitive_execute(rp, m->st, 2, a));
    DN(dnnl_stream_wait(m->st));
    dnnl_primitive_destroy(rp);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(tmp);
}

/* The model of a mode; split: one primitive per layer always. Weights, biases and
 * the input are drawn from seed in a fixed order (per layer and direction, as
 * nn.LSTM's reset_parameters), so they do not depend on split or mode. */
static model *model_create(int mode, int I, int H, int L, int B, int T, int bidir, int P, int split,
                           int omit_state, uint64_t seed) {
    model *m = xcalloc(1, sizeof *m);
    *m = (model){.mode = mode, .I = I, .H = H, .L = L, .B = B, .T = mode == STREAM ? 1 : T,
                 .D = bidir ? 2 : 1, .P = P, .Ho = P ? P : H, .omit_state = omit_state && mode != STREAM};
    DN(dnnl_engine_create(&m->eng, dnnl_cpu, 0));
    DN(dnnl_stream_create(&m->st, m->eng, dnnl_stream_default_flags));
    m->blk = xcalloc(L, sizeof *m->blk);
    for (int l = 0; l < L; l++) {
        int in = l == 0 ? I : m->D * m->Ho;
        block *prev = m->nb ? &m->blk[m->nb - 1] : NULL;
        if (prev && !split && m->D == 1 && prev->in == in)
            prev->nl++;
        else
            m->blk[m->nb++] = (block){.l0 = l, .nl = 1, .in = in};
    }
    dnnl_dims_t d_x = {m->T, B, I};
    dnnl_memory_desc_t x_md = md_dt(3, d_x, int8_mode ? dnnl_u8 : act_dt, dnnl_tnc);
    dnnl_memory_desc_t dx_md = md_tag(3, d_x, dnnl_tnc);
    dnnl_memory_t src = mem_new(m, &x_md), dsrc = mode == TRAIN ? mem_new(m, &dx_md) : NULL;
    for (int i = 0; i < m->nb; i++) {
        block_init(m, &m->blk[i], src, dsrc);
        src = m->blk[i].dst;
        dsrc = m->blk[i].ddst; /* the next block's input gradient is this one's output gradient */
    }
    for (int i = 0; i < m->nb && mode == TRAIN; i++)
        block_bwd_args(m, &m->blk[i]);

    rng r = {seed};
    double k = 1 / sqrt(H);
    for (int l = 0; l < L; l++)
        for (int d = 0; d < m->D; d++) {
            int in = l == 0 ? I : m->D * m->Ho;
            float *w_ih = user_w(m, l, d, W_LAYER, 0), *w_hh = user_w(m, l, d, W_ITER, 0);
            float *bias = user_bias(m, l, d, 0);
            for (size_t i = 0; i < (size_t)4 * H * in; i++)
                w_ih[i] = (float)(k * (2 * rng_uniform(&r) - 1));
            for (size_t i = 0; i < (size_t)4 * H * m->Ho; i++)
                w_hh[i] = (float)(k * (2 * rng_uniform(&r) - 1));
            for (int i = 0; i < 4 * H; i++) /* b_ih + b_hh */
                bias[i] = (float)(k * (2 * rng_uniform(&r) - 1) + k * (2 * rng_uniform(&r) - 1));
            if (P) {
                float *w_hr = user_w(m, l, d, W_PROJ, 0);
                for (size_t i = 0; i < (size_t)P * H; i++)
                    w_hr[i] = (float)(k * (2 * rng_uniform(&r) - 1));
            }
        }
    size_t nx = (size_t)m->T * B * I, ny = (size_t)T * B * m->D * m->Ho;
    float *v = xcalloc(nx > ny ? nx : ny, sizeof *v);
    for (size_t i = 0; i < nx; i++)
        v[i] = (float)rng_normal(&r);
    fill(m, m->blk[0].src, v, nx);
    if (mode == TRAIN) { /* dy of y.sum() */
        for (size_t i = 0; i < ny; i++)
            v[i] = 1;
        fill(m, m->blk[m->nb - 1].ddst, v, ny);
    }
    free(v);
    /* inference and stream never change the weights: reorder them once */
    if (mode != TRAIN)
        for (int i = 0; i < m->nb; i++)
            for (int k = 0; k < NW; k++)
                run_reorder(m, &m->blk[i].fw_re[k]);
    DN(dnnl_stream_wait(m->st));
    return m;
}

static void model_free(model *m) {
    if (!m)
        return;
    for (int i = 0; i < m->nprim; i++)
        dnnl_primitive_destroy(m->prims[i]);
    for (int i = 0; i < m->nmem; i++)
        dnnl_memory_destroy(m->mems[i]);
    dnnl_stream_destroy(m->st);
    dnnl_engine_destroy(m->eng);
    free(m->prims), free(m->mems), free(m->blk), free(m);
}

/* One timed unit of work: train, a forward and backward with the weight reorders
 * (gradients in dw[]; the primitive adds to its diff weights, so they are zeroed
 * first); infer, a forward; stream, one step. */
static void model_run(model *m) {
    if (m->mode == TRAIN)
        for (int i = 0; i < m->nb; i++)
            for (int k = 0; k < NW; k++)
                run_reorder(m, &m->blk[i].fw_re[k]);
    int s = m->mode == STREAM ? (int)(m->step++ & 1) : 0;
    for (int i = 0; i < m->nb; i++)
        DN(dnnl_primitive_execute(m->blk[i].fwd, m->st, m->blk[i].nfa, m->blk[i].fa[s]));
    if (m->mode == TRAIN)
        for (int i = m->nb - 1; i >= 0; i--) {
            block *b = &m->blk[i];
            for (int k = 0; k < NW; k++) {
                run_reorder(m, &b->bw_re[k]);
                if (b->bdw[k])
                    memset(data(b->bdw[k]), 0, nbytes(b->bdw[k]));
            }
            memset(data(b->dbias), 0, nbytes(b->dbias));
            DN(dnnl_primitive_execute(b->bwd, m->st, b->nba, b->ba));
            for (int k = 0; k < NW; k++)
                run_reorder(m, &b->bdw_re[k]);
        }
    DN(dnnl_stream_wait(m->st));
}

/* The current state (h or c) of layer l, direction d: (B, Ho) or (B, H). */
static const float *model_state(const model *m, int l, int d, int c) {
    block *b = block_of(m, l);
    int s = m->mode == STREAM ? (int)(m->step & 1) : 1; /* the buffer written last */
    size_t n = (size_t)m->B * (c ? m->H : m->Ho);
    return data(c ? b->iter_c[s] : b->iter[s]) + ((size_t)(l - b->l0) * m->D + d) * n;
}

/* ---- the plain reference, in double ---- */

static double sigm(double v) { return 1 / (1 + exp(-v)); }

/* One direction of one layer of nn.LSTM:
 *   i, f, g, o = sigm, sigm, tanh, sigm of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), blocks of H
 *   c_t = f c_{t-1} + i g,   m_t = o tanh(c_t),   h_t = W_hr m_t (m_t without projection)
 * x (T, B, In); h is written to y (T, B, ys) at column yo; rev runs t = T-1 .. 0.
 * Per processing step s the cache keeps the gates a (T, B, 4H), c (T+1, B, H) and
 * h (T+1, B, Ho) (index 0: the zero initial state) and m (T, B, H). */
typedef struct { double *a, *c, *h, *m; } ref_cache;

static void ref_forward(double *y, int ys, int yo, ref_cache *cc, const double *x, const double *w_ih,
                        const double *w_hh, const double *b, const double *w_hr, int T, int B, int In, int H,
                        int Ho, int rev) {
    for (int s = 0; s < T; s++) {
        int t = rev ? T - 1 - s : s;
        for (int n = 0; n < B; n++) {
            const double *xt = x + ((size_t)t * B + n) * In, *hp = cc->h + ((size_t)s * B + n) * Ho;
            const double *cp = cc->c + ((size_t)s * B + n) * H;
            double *a = cc->a + ((size_t)s * B + n) * 4 * H, *c = cc->c + ((size_t)(s + 1) * B + n) * H;
            double *mm = cc->m + ((size_t)s * B + n) * H, *h = cc->h + ((size_t)(s + 1) * B + n) * Ho;
            for (int j = 0; j < 4 * H; j++) {
                double z = b[j];
                for (int i = 0; i < In; i++)
                    z += w_ih[(size_t)j * In + i] * xt[i];
                for (int i = 0; i < Ho; i++)
                    z += w_hh[(size_t)j * Ho + i] * hp[i];
                a[j] = j / H == 2 ? tanh(z) : sigm(z);
            }
            for (int j = 0; j < H; j++) {
                c[j] = a[H + j] * cp[j] + a[j] * a[2 * H + j];
                mm[j] = a[3 * H + j] * tanh(c[j]);
            }
            for (int j = 0; j < Ho; j++) {
                double v = mm[j];
                if (w_hr) {
                    v = 0;
                    for (int i = 0; i < H; i++)
                        v += w_hr[(size_t)j * H + i] * mm[i];
                }
                h[j] = v;
                y[((size_t)t * B + n) * ys + yo + j] = v;
            }
        }
    }
}

/* The backward of ref_forward given dy (T, B, ys) at column yo: accumulates into dx
 * (T, B, In) and the weight gradients (db serves b_ih and b_hh alike). */
static void ref_backward(double *dx, double *dw_ih, double *dw_hh, double *db, double *dw_hr, const double *dy,
                         int ys, int yo, const ref_cache *cc, const double *x, const double *w_ih,
                         const double *w_hh, const double *w_hr, int T, int B, int In, int H, int Ho,
                         int rev) {
    double *dh = xcalloc((size_t)B * Ho, sizeof *dh), *dc = xcalloc((size_t)B * H, sizeof *dc);
    double *dm = xcalloc(H, sizeof *dm), *dz = xcalloc(4 * (size_t)H, sizeof *dz);
    for (int s = T - 1; s >= 0; s--) {
        int t = rev ? T - 1 - s : s;
        for (int n = 0; n < B; n++) {
            const double *xt = x + ((size_t)t * B + n) * In, *hp = cc->h + ((size_t)s * B + n) * Ho;
            const double *cp = cc->c + ((size_t)s * B + n) * H, *c = cc->c + ((size_t)(s + 1) * B + n) * H;
            const double *a = cc->a + ((size_t)s * B + n) * 4 * H, *mm = cc->m + ((size_t)s * B + n) * H;
            double *dhn = dh + (size_t)n * Ho, *dcn = dc + (size_t)n * H, *dxt = dx + ((size_t)t * B + n) * In;
            for (int j = 0; j < Ho; j++)
                dhn[j] += dy[((size_t)t * B + n) * ys + yo + j];
            for (int i = 0; i < H; i++) {
                double v = w_hr ? 0 : dhn[i];
                for (int j = 0; w_hr && j < Ho; j++)
                    v += w_hr[(size_t)j * H + i] * dhn[j];
                dm[i] = v;
            }
            if (w_hr)
                for (int j = 0; j < Ho; j++)
                    for (int i = 0; i < H; i++)
                        dw_hr[(size_t)j * H + i] += dhn[j] * mm[i];
            for (int j = 0; j < H; j++) {
                double ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j], tc = tanh(c[j]);
                double dcj = dcn[j] + dm[j] * og * (1 - tc * tc);
                dz[j] = dcj * gg * ig * (1 - ig);
                dz[H + j] = dcj * cp[j] * fg * (1 - fg);
                dz[2 * H + j] = dcj * ig * (1 - gg * gg);
                dz[3 * H + j] = dm[j] * tc * og * (1 - og);
                dcn[j] = dcj * fg;
            }
            for (int i = 0; i < Ho; i++)
                dhn[i] = 0;
            for (int j = 0; j < 4 * H; j++) {
                db[j] += dz[j];
                for (int i = 0; i < In; i++) {
                    dw_ih[(size_t)j * In + i] += dz[j] * xt[i];
                    dxt[i] += w_ih[(size_t)j * In + i] * dz[j];
                }
                for (int i = 0; i < Ho; i++) {
                    dw_hh[(size_t)j * Ho + i] += dz[j] * hp[i];
                    dhn[i] += w_hh[(size_t)j * Ho + i] * dz[j];
                }
            }
        }
    }
    free(dh), free(dc), free(dm), free(dz);
}

static double *to_double(const float *p, size_t n) {
    double *d = xcalloc(n, sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = p[i];
    return d;
}

static double max_err(const float *got, const double *want, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double v = fabs(got[i] - want[i]);
        e = v > e || v != v ? v : e;
    }
    return e;
}

typedef struct { const char *name; int I, H, P, L, B, T, bidir, split; } check_case;

/* Runs one case through oneDNN (infer, train twice, stream when unidirectional) and
 * the reference, prints the largest errors, returns the number of failed checks. */
static int check_one(const check_case *c, int omit_state) {
    const double tol = 1e-4;
    int I = c->I, H = c->H, P = c->P, L = c->L, B = c->B, T = c->T, D = c->bidir ? 2 : 1, Ho = P ? P : H;
    model *tr = model_create(TRAIN, I, H, L, B, T, c->bidir, P, c->split, omit_state, 7);
    model *inf = model_create(INFER, I, H, L, B, T, c->bidir, P, c->split, omit_state, 7);
    /* a random dy tests more than y.sum()'s ones */
    rng r = {99};
    float *dyf = data(tr->blk[tr->nb - 1].ddst);
    size_t ny = (size_t)T * B * D * Ho;
    for (size_t i = 0; i < ny; i++)
        dyf[i] = (float)rng_normal(&r);
    model_run(tr);
    model_run(tr); /* twice: the gradients must not accumulate */
    model_run(inf);

    /* the reference on the same weights */
    double **xs = xcalloc(L + 1, sizeof *xs), **dxs = xcalloc(L + 1, sizeof *dxs);
    ref_cache *cc = xcalloc((size_t)L * D, sizeof *cc);
    double **w = xcalloc((size_t)L * D * 4, sizeof *w), **dw = xcalloc((size_t)L * D * 4, sizeof *dw);
    xs[0] = to_double(data(tr->blk[0].src), (size_t)T * B * I);
    for (int l = 0; l < L; l++) {
        int In = l ? D * Ho : I;
        xs[l + 1] = xcalloc((size_t)T * B * D * Ho, sizeof **xs);
        for (int d = 0; d < D; d++) {
            double **wl = w + ((size_t)l * D + d) * 4, **dwl = dw + ((size_t)l * D + d) * 4;
            ref_cache *k = &cc[l * D + d];
            wl[0] = to_double(user_w(tr, l, d, W_LAYER, 0), (size_t)4 * H * In);
            wl[1] = to_double(user_w(tr, l, d, W_ITER, 0), (size_t)4 * H * Ho);
            wl[2] = to_double(user_bias(tr, l, d, 0), (size_t)4 * H);
            wl[3] = P ? to_double(user_w(tr, l, d, W_PROJ, 0), (size_t)Ho * H) : NULL;
            dwl[0] = xcalloc((size_t)4 * H * In, sizeof **dw);
            dwl[1] = xcalloc((size_t)4 * H * Ho, sizeof **dw);
            dwl[2] = xcalloc((size_t)4 * H, sizeof **dw);
            dwl[3] = xcalloc((size_t)Ho * H, sizeof **dw);
            k->a = xcalloc((size_t)T * B * 4 * H, sizeof *k->a);
            k->c = xcalloc((size_t)(T + 1) * B * H, sizeof *k->c);
            k->h = xcalloc((size_t)(T + 1) * B * Ho, sizeof *k->h);
            k->m = xcalloc((size_t)T * B * H, sizeof *k->m);
            ref_forward(xs[l + 1], D * Ho, d * Ho, k, xs[l], wl[0], wl[1], wl[2], wl[3], T, B, In, H, Ho, d);
        }
    }
    dxs[L] = to_double(dyf, ny);
    for (int l = L - 1; l >= 0; l--) {
        int In = l ? D * Ho : I;
        dxs[l] = xcalloc((size_t)T * B * In, sizeof **dxs);
        for (int d = 0; d < D; d++) {
            double **wl = w + ((size_t)l * D + d) * 4, **dwl = dw + ((size_t)l * D + d) * 4;
            ref_backward(dxs[l], dwl[0], dwl[1], dwl[2], P ? dwl[3] : NULL, dxs[l + 1], D * Ho, d * Ho,
                         &cc[l * D + d], xs[l], wl[0], wl[1], wl[3], T, B, In, H, Ho, d);
        }
    }

    /* compare */
    double e_y = max_err(data(inf->blk[inf->nb - 1].dst), xs[L], ny);
    double e_yt = max_err(data(tr->blk[tr->nb - 1].dst), xs[L], ny);
    double e_dx = max_err(data(tr->blk[0].dsrc), dxs[0], (size_t)T * B * I);
    double e_state = 0, e_w[4] = {0, 0, 0, 0};
    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++) {
            int In = l ? D * Ho : I;
            ref_cache *k = &cc[l * D + d];
            double **dwl = dw + ((size_t)l * D + d) * 4, e;
            e = max_err(model_state(inf, l, d, 0), k->h + (size_t)T * B * Ho, (size_t)B * Ho);
            e_state = e > e_state ? e : e_state;
            e = max_err(model_state(inf, l, d, 1), k->c + (size_t)T * B * H, (size_t)B * H);
            e_state = e > e_state ? e : e_state;
            e = max_err(user_w(tr, l, d, W_LAYER, 1), dwl[0], (size_t)4 * H * In);
            e_w[0] = e > e_w[0] ? e : e_w[0];
            e = max_err(user_w(tr, l, d, W_ITER, 1), dwl[1], (size_t)4 * H * Ho);
            e_w[1] = e > e_w[1] ? e : e_w[1];
            e = max_err(user_bias(tr, l, d, 1), dwl[2], (size_t)4 * H);
            e_w[2] = e > e_w[2] ? e : e_w[2];
            if (P) {
                e = max_err(user_w(tr, l, d, W_PROJ, 1), dwl[3], (size_t)Ho * H);
                e_w[3] = e > e_w[3] ? e : e_w[3];
            }
        }
    double e_stream = 0;
    if (D == 1) { /* T single steps with the state carried must give the same y */
        model *st = model_create(STREAM, I, H, L, B, T, 0, P, c->split, omit_state, 7);
        float *x1 = data(st->blk[0].src);
        const float *y1 = data(st->blk[st->nb - 1].dst);
        for (int t = 0; t < T; t++) {
            for (size_t i = 0; i < (size_t)B * I; i++)
                x1[i] = (float)xs[0][(size_t)t * B * I + i];
            model_run(st);
            double e = max_err(y1, xs[L] + (size_t)t * B * Ho, (size_t)B * Ho);
            e_stream = e > e_stream ? e : e_stream;
        }
        model_free(st);
    }

    struct { const char *what; double e; } res[] = {
        {"y (infer)", e_y}, {"h_n c_n (infer)", e_state}, {"y (train)", e_yt}, {"dx", e_dx},
        {"dW_ih", e_w[0]}, {"dW_hh", e_w[1]}, {"db", e_w[2]}, {"dW_hr", e_w[3]}, {"y (stream)", e_stream}};
    int failed = 0;
    double worst = 0;
    for (size_t i = 0; i < sizeof res / sizeof *res; i++) {
        if (!(res[i].e <= tol)) {
            printf("FAIL %s: %s max abs error %.3g > %g\n", c->name, res[i].what, res[i].e, tol);
            failed++;
        }
        worst = res[i].e > worst ? res[i].e : worst;
    }
    printf("%-4s %s: max abs error y %.2e, dx %.2e, dW_ih %.2e, dW_hh %.2e, db %.2e, dW_hr %.2e, "
           "stream %.2e (worst %.2e)\n",
           failed ? "FAIL" : "ok", c->name, e_y > e_yt ? e_y : e_yt, e_dx, e_w[0], e_w[1], e_w[2], e_w[3],
           e_stream, worst);

    for (int i = 0; i < L * D; i++) {
        free(cc[i].a), free(cc[i].c), free(cc[i].h), free(cc[i].m);
        for (int k = 0; k < 4; k++)
            free(w[i * 4 + k]), free(dw[i * 4 + k]);
    }
    for (int l = 0; l <= L; l++)
        free(xs[l]), free(dxs[l]);
    free(xs), free(dxs), free(cc), free(w), free(dw);
    model_free(tr);
    model_free(inf);
    return failed;
}

static int run_checks(int omit_state) {
    static const check_case cases[] = {
        {"I=5 H=7 B=3 T=4, 1 layer", 5, 7, 0, 1, 3, 4, 0, 0},
        {"I=5 H=7 B=3 T=4, 1 layer bidirectional", 5, 7, 0, 1, 3, 4, 1, 0},
        {"I=5 H=7 B=3 T=4, 2 layers bidirectional", 5, 7, 0, 2, 3, 4, 1, 0},
        {"I=5 H=7 B=3 T=4, 3 layers (layers 1-2 in one primitive)", 5, 7, 0, 3, 3, 4, 0, 0},
        {"I=7 H=7 B=2 T=5, 2 layers (one primitive)", 7, 7, 0, 2, 2, 5, 0, 0},
        {"I=7 H=7 B=2 T=5, 2 layers (a primitive per layer)", 7, 7, 0, 2, 2, 5, 0, 1},
        {"I=5 H=7 P=3 B=3 T=4, 1 layer", 5, 7, 3, 1, 3, 4, 0, 0},
        {"I=5 H=7 P=3 B=3 T=4, 2 layers bidirectional", 5, 7, 3, 2, 3, 4, 1, 0},
        {"I=3 H=7 P=3 B=2 T=4, 3 layers (one primitive)", 3, 7, 3, 3, 2, 4, 0, 0},
        {"I=14 H=7 B=2 T=3, 3 layers bidirectional", 14, 7, 0, 3, 2, 3, 1, 0},
        {"I=16 H=32 B=4 T=6, 2 layers bidirectional", 16, 32, 0, 2, 4, 6, 1, 0},
    };
    int failed = 0, n = sizeof cases / sizeof *cases;
    for (int i = 0; i < n; i++)
        failed += check_one(&cases[i], omit_state) != 0;
    printf("%d passed, %d failed\n", n - failed, failed);
    return failed != 0;
}

/* ---- the benchmark ---- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Multiply-adds times two of one forward over T steps, as `lstm bench` counts. */
static double forward_flops(int I, int H, int L, int D, int P, int T, int B) {
    int Ho = P ? P : H;
    double f = 0;
    for (int l = 0; l < L; l++) {
        int In = l == 0 ? I : D * Ho;
        f += D * (2.0 * T * B * 4 * H * (In + Ho) + (P ? 2.0 * T * B * Ho * H : 0));
    }
    return f;
}

static const char *usage =
    "usage: onednn_lstm [--mode train|infer|stream] [--input I] [--hidden H] [--layers L] [--batch B]\n"
    "                   [--steps T] [--bidirectional] [--proj P] [--threads N] [--repeat R] [--json]\n"
    "                   [--split] [--bf16] [--int8] [--check [--omit-state]]\n"
    "Times nn.LSTM's work with oneDNN's LSTM primitive, as `lstm bench` does with lstm.\n"
    "--split: one primitive per layer; --bf16: activations and weights in bfloat16 (biases,\n"
    "cell states and all gradients f32), where oneDNN supports it; --check: compare with a\n"
    "plain double reference, in f32 only; --int8: u8 activations, s8 weights (infer, stream)\n"
    "(--omit-state: pass no initial state, which shows oneDNN 2.6.3's diff_weights_iter bug).\n";

int main(int argc, char **argv) {
    const char *mode_s = "train";
    int I = 256, H = 256, L = 1, B = 32, T = 50, bidir = 0, P = 0, threads = 2, repeat = 10;
    int json = 0, check = 0, split = 0, omit_state = 0, bf16 = 0, int8 = 0;
    struct { const char *name; int *v; } ints[] = {{"--input", &I}, {"--hidden", &H}, {"--layers", &L},
        {"--batch", &B}, {"--steps", &T}, {"--proj", &P}, {"--threads", &threads}, {"--repeat", &repeat}};
    struct { const char *name; int *v; } flags[] = {{"--bidirectional", &bidir}, {"--json", &json},
        {"--check", &check}, {"--split", &split}, {"--omit-state", &omit_state},
        {"--bf16", &bf16}, {"--int8", &int8}};
    for (int i = 1; i < argc; i++) {
        int done = 0;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
            if (strcmp(argv[i], ints[k].name) == 0 && i + 1 < argc) {
                char *end;
                long v = strtol(argv[++i], &end, 10);
                if (*end || v < 0 || v > 1 << 24) {
                    fprintf(stderr, "onednn_lstm: %s: bad number '%s'\n", ints[k].name, argv[i]);
                    return 2;
                }
                *ints[k].v = (int)v, done = 1;
            }
        for (size_t k = 0; k < sizeof flags / sizeof *flags && !done; k++)
            if (strcmp(argv[i], flags[k].name) == 0)
                *flags[k].v = 1, done = 1;
        if (!done && strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode_s = argv[++i], done = 1;
        if (!done) {
            fputs(usage, strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    int mode = strcmp(mode_s, "train") == 0 ? TRAIN : strcmp(mode_s, "infer") == 0 ? INFER
               : strcmp(mode_s, "stream") == 0 ? STREAM : -1;
    if (mode < 0 || I < 1 || H < 1 || L < 1 || B < 1 || T < 1 || repeat < 1 || threads < 1 || P >= H ||
        (mode == STREAM && bidir)) {
        fprintf(stderr, "onednn_lstm: need a mode train|infer|stream, sizes >= 1, proj < hidden "
                        "(and stream is unidirectional)\n%s", usage);
        return 2;
    }
    omp_set_num_threads(threads);
    if (bf16 && check) {
        fprintf(stderr, "onednn_lstm: --check is for f32\n");
        return 2;
    }
    if (bf16)
        act_dt = dnnl_bf16;
    if (int8 && (bf16 || check || P || mode == TRAIN)) {
        fprintf(stderr, "onednn_lstm: --int8 is for infer and stream, without --proj, --bf16, --check\n");
        return 2;
    }
    if (int8) {
        int8_mode = 1;
        DN(dnnl_primitive_attr_create(&q_attr));
        /* activations in (-1, 1) onto u8: u = 127 a + 128; weights U(-k, k), k = 1/sqrt(H) */
        DN(dnnl_primitive_attr_set_rnn_data_qparams(q_attr, 127.f, 128.f));
        float *ws = xcalloc((size_t)4 * H, sizeof *ws);
        for (int i = 0; i < 4 * H; i++)
            ws[i] = 127.f * sqrtf((float)H);
        DN(dnnl_primitive_attr_set_rnn_weights_qparams(q_attr, 4 * H, (1 << 3) + (1 << 4), ws));
        free(ws);
    }
    if (check)
        return run_checks(omit_state);

    model *m = model_create(mode, I, H, L, B, T, bidir, P, split, 0, 1);
    double *times = xcalloc(repeat, sizeof *times);
    for (int it = -2; it < repeat; it++) { /* two warm-up runs */
        double t0 = now();
        for (int s = 0; s < (mode == STREAM ? T : 1); s++)
            model_run(m);
        double dt = now() - t0;
        if (it >= 0)
            times[it] = mode == STREAM ? dt / T : dt;
    }
    qsort(times, repeat, sizeof *times, cmp_double);
    double med = repeat % 2 ? times[repeat / 2] : (times[repeat / 2 - 1] + times[repeat / 2]) / 2;
    double flops = forward_flops(I, H, L, bidir ? 2 : 1, P, mode == STREAM ? 1 : T, B) * (mode == TRAIN ? 3 : 1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const dnnl_version_t *v = dnnl_version();
    printf("onednn %d.%d.%d%s %s I=%d H=%d L=%d%s%s B=%d T=%d threads=%d: %.3f ms%s, %.1f GFLOP/s, "
           "peak RSS %.1f MiB\n",
           v->major, v->minor, v->patch, bf16 ? " bf16" : int8 ? " int8" : "", mode_s, I, H, L, bidir ? " bidirectional" : "", P ? " proj" : "", B,
           T, threads, med * 1e3, mode == STREAM ? " per step" : "", flops / med * 1e-9, ru.ru_maxrss / 1024.0);
    if (json)
        printf("{\"impl\":\"onednn\",\"precision\":\"%s\",\"version\":\"%d.%d.%d\",\"mode\":\"%s\",\"input\":%d,\"hidden\":%d,"
               "\"layers\":%d,\"bidirectional\":%d,\"proj\":%d,\"batch\":%d,\"steps\":%d,\"threads\":%d,"
               "\"primitives\":%d,\"ms\":%.6f,\"gflops\":%.3f,\"peak_rss_mib\":%.1f}\n",
               bf16 ? "bf16" : int8 ? "int8" : "fp32", v->major, v->minor, v->patch, mode_s, I, H, L, bidir, P, B, T, threads,
               m->nb, med * 1e3,
               flops / med * 1e-9, ru.ru_maxrss / 1024.0);
    free(times);
    model_free(m);
    return 0;
}
