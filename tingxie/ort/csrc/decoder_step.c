/* A decoder call (one new token per row, or a window's prompt) of an int8 Whisper model on AVX512-VNNI CPUs, whole, in one call.
 *
 * ONNX Runtime ran the step as ~250 small kernels (a 5-beam tiny.en step ~7 ms, most of it between kernels and in
 * re-reading the window's cross-attention keys once per kernel); here each layer is a few passes over its weights and
 * the window's keys and values. The numbers are those of the exported int8 graph: every product as MatMulNBits at
 * accuracy level 4 (weights symmetric per output and block of 32 along K, zero point 128; each row's activations
 * quantized per block of 32 to int8, scale max |x| / 127, rounded to nearest even; integer sums per block, scaled
 * and summed in float32), LayerNorm (eps 1e-5), exact-form GELU, float32 attention; the queries' 1/8 is folded into
 * their weights as in the graph.
 *
 * Weights come packed (tingxie/ort/native_decoder.py) as in logits_int8.c: [N / 16][K / 4][16][4] bytes and
 * [N / 16][K / 32][16] scales. Rows are grouped by audio (`group` consecutive rows: the beams of one audio), which
 * share the audio's prompt keys/values (prefix) and cross-attention keys/values. Called through ctypes, which
 * releases the GIL; the work is split over `threads` pthreads with a barrier between phases. Each output depends only
 * on its inputs, never on the thread count or the split. A plain step may also take the logits' weight and give the
 * logits themselves (the vocabulary's product on the same threads; logits_int8.c's numbers).
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/exp_avx512.h"
#include "kernel_common.h"

#define BLOCK 32
#define LANES 16
#define MAX_ROWS 8 /* rows per pass over a weight panel: the accumulators stay in registers */
#define CROSS_ROWS 16 /* queries per pass over a head's cross keys and values (a prompt's tokens: fewer passes) */
#define D_HEAD 64
#define MAX_THREADS 16
#define PER_LAYER 24 /* pointers per layer in `params` (see the enum) */
#define LN_EPS 1e-5f
#define OWN_ROWS 8 /* up to this many token rows, each thread quantizes every row itself (prepare) */
#define PREFETCH_AHEAD 8192 /* bytes of the vocabulary's weight read ahead (as logits_int8.c) */

enum { LN1_G, LN1_B, QKV_W, QKV_S, QKV_B, OUT_W, OUT_S, OUT_B, LN2_G, LN2_B, CQ_W, CQ_S, CQ_B, CO_W, CO_S, CO_B,
       LN3_G, LN3_B, FC1_W, FC1_S, FC1_B, FC2_W, FC2_S, FC2_B };
enum { STORE, ADD, GELU, VOCABULARY }; /* VOCABULARY: STORE without a bias, its weight streamed (read ahead, non-temporal) */

typedef struct {
    atomic_int count, generation;
    int n;
} barrier_t;

typedef struct {
    /* the call */
    const void *const *params;
    int n_layer, n_head, d, rows, group, new, prefix, capacity, past, frames, threads; /* rows: token rows (rows x new) */
    float *x, *out;
    const uint8_t *vocab_w; /* the logits' packed weight and scales (as logits_int8.c takes them), or NULL */
    const float *vocab_s;
    int n_vocab;
    float *logits; /* (rows, n_vocab) where vocab_w is given; else the final hidden state goes to out */
    const float *const *prefix_k, *const *prefix_v;
    const uint16_t *const *cross_kt, *const *cross_v; /* bfloat16 (cross_bf16) */
    float *const *self_k, *const *self_v;
    const int *cache_rows; /* the cache's row of each of the call's rows (a batch's windows still decoding), or NULL: the same */
    int n_scores;                       /* alignment heads asked for: their pre-softmax cross-attention scores out */
    const int *score_layers, *score_heads;
    float *head_scores;                 /* (n_scores, rows, frames) */
    /* work buffers */
    int8_t *xq;
    float *xscale;
    int32_t *xcorr;
    float *h, *qkv, *cq, *attn, *wide, *scores; /* scores: per thread, (group, max(frames, prefix + capacity + 1)) */
    int score_stride;
    barrier_t barrier;
    atomic_int go;
} step_t;

static void barrier_wait(barrier_t *b) {
    if (b->n == 1) return;
    const int generation = atomic_load_explicit(&b->generation, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->generation, 1, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&b->generation, memory_order_acquire) == generation; spins++) {
        if (spins < 4096) _mm_pause();
        else sched_yield(); /* the other thread lost its core (a VM's host took it): give ours up too */
    }
}

static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

/* 16 bfloat16 values as float32 (exact: a bfloat16 is a float32's upper half) */
static inline __m512 bf16_load(__mmask16 keep, const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(keep, p)), 16));
}

/* the cache's row (self keys and values) of the call's row r, and so its audio (prefix, cross keys and values) */
static inline int cache_row(const step_t *s, int r) { return s->cache_rows != NULL ? s->cache_rows[r] : r; }

/* d is a multiple of 64 (decoder_step checks) */
static void layer_norm(const float *x, int first, int last, int d, const float *gain, const float *bias, float *out) {
    for (int r = first; r < last; r++) {
        const float *row = x + (size_t)r * d;
        __m512 total = _mm512_setzero_ps();
        for (int i = 0; i < d; i += LANES) total = _mm512_add_ps(total, _mm512_loadu_ps(row + i));
        const __m512 mean = _mm512_set1_ps(hsum(total) / (float)d);
        __m512 squares = _mm512_setzero_ps();
        for (int i = 0; i < d; i += LANES) {
            const __m512 centred = _mm512_sub_ps(_mm512_loadu_ps(row + i), mean);
            squares = _mm512_fmadd_ps(centred, centred, squares);
        }
        const __m512 inverse = _mm512_set1_ps(1.0f / sqrtf(hsum(squares) / (float)d + LN_EPS));
        for (int i = 0; i < d; i += LANES) {
            const __m512 scaled = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(row + i), mean), inverse);
            _mm512_storeu_ps(out + (size_t)r * d + i, _mm512_fmadd_ps(scaled, _mm512_loadu_ps(gain + i), _mm512_loadu_ps(bias + i)));
        }
    }
}

/* rows [first, last) of x (rows, k) to int8 in blocks of 32 as MatMulNBits' accuracy level 4 does, into buffer `slot`
 * (quantize_block: the same code as logits_int8.c) */
static void quantize_rows(const step_t *s, int slot, const float *x, int first, int last, int k) {
    const int blocks = k / BLOCK;
    int8_t *xq = s->xq + (size_t)slot * s->rows * 4 * s->d;
    float *xscale = s->xscale + (size_t)slot * s->rows * 4 * s->d / BLOCK;
    int32_t *xcorr = s->xcorr + (size_t)slot * s->rows * 4 * s->d / BLOCK;
    for (int r = first; r < last; r++)
        for (int b = 0; b < blocks; b++)
            quantize_block(x + (size_t)r * k + b * BLOCK, xq + (size_t)r * k + b * BLOCK, xscale + r * blocks + b, xcorr + r * blocks + b);
}

/* call(n) with n = rows as a constant (1-8), so that each instantiation keeps its accumulators in registers */
#define BY_ROWS(call, rows)                                                                                            \
    switch (rows) {                                                                                                    \
    case 1: call(1); break;                                                                                            \
    case 2: call(2); break;                                                                                            \
    case 3: call(3); break;                                                                                            \
    case 4: call(4); break;                                                                                            \
    case 5: call(5); break;                                                                                            \
    case 6: call(6); break;                                                                                            \
    case 7: call(7); break;                                                                                            \
    default: call(8); break;                                                                                           \
    }

#define BY_ROWS16(call, rows)                                                                                          \
    switch (rows) {                                                                                                    \
    case 9: call(9); break;                                                                                            \
    case 10: call(10); break;                                                                                          \
    case 11: call(11); break;                                                                                          \
    case 12: call(12); break;                                                                                          \
    case 13: call(13); break;                                                                                          \
    case 14: call(14); break;                                                                                          \
    case 15: call(15); break;                                                                                          \
    case 16: call(16); break;                                                                                          \
    default: BY_ROWS(call, rows)                                                                                       \
    }

/* out (rows, n) <- / += / gelu of (quantized x) @ W + bias, for the panels [first, last); bias NULL: none. The last
 * panel of an n that is not a multiple of 16 (the vocabulary) writes its first n % 16 columns only. */
static inline __attribute__((always_inline)) void panels(const step_t *s, int slot, int r0, const int rows, int k, int n,
                                                          const uint8_t *w, const float *ws, const float *bias, float *out, int mode,
                                                          int first, int last) {
    const int blocks = k / BLOCK;
    const int8_t *xq = s->xq + (size_t)slot * s->rows * 4 * s->d + (size_t)r0 * k;
    const float *xscale = s->xscale + (size_t)slot * s->rows * 4 * s->d / BLOCK + (size_t)r0 * blocks;
    const int32_t *xcorr = s->xcorr + (size_t)slot * s->rows * 4 * s->d / BLOCK + (size_t)r0 * blocks;
    for (int p = first; p < last; p++) {
        const uint8_t *wp = w + (size_t)p * k * LANES;
        const float *sp = ws + (size_t)p * blocks * LANES;
        __m512 acc[MAX_ROWS];
        for (int r = 0; r < rows; r++) acc[r] = _mm512_setzero_ps();
        for (int b = 0; b < blocks; b++) {
            __m512i sums[MAX_ROWS];
            for (int r = 0; r < rows; r++) sums[r] = _mm512_set1_epi32(-xcorr[r * blocks + b]);
            for (int g = 0; g < BLOCK / 4; g++) {
                if (mode == VOCABULARY) _mm_prefetch((const char *)(wp + ((size_t)b * (BLOCK / 4) + g) * LANES * 4 + PREFETCH_AHEAD), _MM_HINT_NTA);
                const __m512i weights = _mm512_loadu_si512(wp + ((size_t)b * (BLOCK / 4) + g) * LANES * 4);
                for (int r = 0; r < rows; r++) {
                    int32_t four;
                    memcpy(&four, xq + (size_t)r * k + b * BLOCK + g * 4, 4);
                    sums[r] = _mm512_dpbusd_epi32(sums[r], weights, _mm512_set1_epi32(four));
                }
            }
            if (mode == VOCABULARY) _mm_prefetch((const char *)(sp + b * LANES) + PREFETCH_AHEAD / 8, _MM_HINT_NTA);
            const __m512 wscale = _mm512_loadu_ps(sp + b * LANES);
            for (int r = 0; r < rows; r++)
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r]), _mm512_mul_ps(wscale, _mm512_set1_ps(xscale[r * blocks + b])), acc[r]);
        }
        const int n0 = p * LANES;
        const __mmask16 keep = n0 + LANES <= n ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - n0)) - 1);
        const __m512 b16 = bias != NULL ? _mm512_loadu_ps(bias + n0) : _mm512_setzero_ps();
        for (int r = 0; r < rows; r++) {
            float *dst = out + (size_t)(r0 + r) * n + n0;
            __m512 v = bias != NULL ? _mm512_add_ps(acc[r], b16) : acc[r];
            if (mode == ADD) v = _mm512_add_ps(v, _mm512_loadu_ps(dst));
            else if (mode == GELU) v = gelu_ps(v);
            _mm512_mask_storeu_ps(dst, keep, v);
        }
    }
}

/* this thread's share of the panels of a product over every row: w, ws, bias as panels() takes them */
static void product_of(const step_t *s, int thread, int k, int n_out, const uint8_t *w, const float *ws, const float *bias, float *out,
                       int mode) {
    const int panels_total = (n_out + LANES - 1) / LANES;
    const int first = (int)((long)panels_total * thread / s->threads), last = (int)((long)panels_total * (thread + 1) / s->threads);
    const int slot = s->rows <= OWN_ROWS ? thread : 0;
    for (int r0 = 0; r0 < s->rows; r0 += MAX_ROWS) {
#define PANELS(n) panels(s, slot, r0, n, k, n_out, w, ws, bias, out, mode, first, last)
        BY_ROWS(PANELS, s->rows - r0 < MAX_ROWS ? s->rows - r0 : MAX_ROWS)
    }
}

/* a layer's product `which` (QKV_W, OUT_W, ...: its weight, scales and bias in the layer's pointers) */
static void product(const step_t *s, int thread, int k, int n_out, const void *const *p, int which, float *out, int mode) {
    product_of(s, thread, k, n_out, p[which], p[which + 1], p[which + 2], out, mode);
}

static inline float dot64(const float *a, const float *b) {
    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b));
    for (int i = 16; i < D_HEAD; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    return hsum(acc);
}

/* softmax of w[0..n) in place; returns nothing: the weights sum to 1 */
static void softmax(float *w, int n) {
    __m512 high = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += LANES) {
        const __mmask16 keep = i + LANES <= n ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        high = _mm512_max_ps(high, _mm512_mask_loadu_ps(high, keep, w + i));
    }
    const float top = _mm512_reduce_max_ps(high);
    __m512 total = _mm512_setzero_ps();
    const __m512 shift = _mm512_set1_ps(top);
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(w + i), shift));
        _mm512_storeu_ps(w + i, e);
        total = _mm512_add_ps(total, e);
    }
    if (i < n) {
        const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, w + i), shift));
        _mm512_mask_storeu_ps(w + i, tail, e);
        total = _mm512_add_ps(total, _mm512_maskz_mov_ps(tail, e));
    }
    const float inverse = 1.0f / hsum(total);
    for (int j = 0; j < n; j++) w[j] *= inverse;
}

/* self-attention of token row i (new token j of row r = i / new), head h: the audio's prompt (prefix), the row's
 * earlier tokens (its buffer) and its new tokens up to j */
static void self_attention(const step_t *s, int layer, int i, int h, float *scores) {
    const int d = s->d, H = s->n_head, r = i / s->new, j = i % s->new, row = cache_row(s, r), audio = row / s->group;
    const float *q = s->qkv + (size_t)i * 3 * d + h * D_HEAD;
    const float *first = s->qkv + (size_t)(i - j) * 3 * d + h * D_HEAD; /* the row's first new token */
    const float *pk = s->prefix_k[layer] + ((size_t)audio * H + h) * s->prefix * D_HEAD;
    const float *pv = s->prefix_v[layer] + ((size_t)audio * H + h) * s->prefix * D_HEAD;
    float *own_k = s->self_k[layer] + ((size_t)row * H + h) * s->capacity * D_HEAD;
    float *own_v = s->self_v[layer] + ((size_t)row * H + h) * s->capacity * D_HEAD;
    const int before = s->prefix + s->past, n = before + j + 1;
    for (int m = 0; m < s->prefix; m++) scores[m] = dot64(q, pk + (size_t)m * D_HEAD);
    for (int m = 0; m < s->past; m++) scores[s->prefix + m] = dot64(q, own_k + (size_t)m * D_HEAD);
    for (int m = 0; m <= j; m++) scores[before + m] = dot64(q, first + (size_t)m * 3 * d + d);
    softmax(scores, n);
    __m512 acc[D_HEAD / 16];
    for (int c = 0; c < D_HEAD / 16; c++) acc[c] = _mm512_setzero_ps();
    for (int m = 0; m < n; m++) {
        const float *v = m < s->prefix ? pv + (size_t)m * D_HEAD
                         : m < before  ? own_v + (size_t)(m - s->prefix) * D_HEAD
                                       : first + (size_t)(m - before) * 3 * d + 2 * d;
        const __m512 weight = _mm512_set1_ps(scores[m]);
        for (int c = 0; c < D_HEAD / 16; c++) acc[c] = _mm512_fmadd_ps(weight, _mm512_loadu_ps(v + c * 16), acc[c]);
    }
    float *dst = s->attn + (size_t)i * d + h * D_HEAD;
    for (int c = 0; c < D_HEAD / 16; c++) _mm512_storeu_ps(dst + c * 16, acc[c]);
}

/* the new tokens' keys and values into their rows' buffers (the caller made room), once every row has read its own */
static void store_new(const step_t *s, int layer, int i, int h) {
    const int d = s->d, H = s->n_head, r = i / s->new, j = i % s->new;
    const float *k = s->qkv + (size_t)i * 3 * d + d + h * D_HEAD;
    const size_t at = (((size_t)cache_row(s, r) * H + h) * s->capacity + s->past + j) * D_HEAD;
    memcpy(s->self_k[layer] + at, k, D_HEAD * sizeof(float));
    memcpy(s->self_v[layer] + at, k + d, D_HEAD * sizeof(float));
}

/* scores (rows, F) of the queries q[0..rows) against one head's keys in blocks of 16 frames (blocks, 64, 16): 16
 * frames' scores per vector, the keys read front to back (keys as (64, frames), read a column block at a time, were
 * ~5x slower: 64 strided streams per block). rows is a constant in each instantiation: accumulators in registers. */
static inline __attribute__((always_inline)) void cross_scores(const float *const *q, const int rows, const uint16_t *kt, int F,
                                                                float *scores) {
    const int blocks = (F + LANES - 1) / LANES;
    const __mmask16 tail = F % LANES ? (__mmask16)((1u << (F % LANES)) - 1) : (__mmask16)0xFFFF;
    for (int b = 0; b < blocks; b++) {
        const uint16_t *block = kt + (size_t)b * D_HEAD * LANES;
        __m512 acc[CROSS_ROWS];
        for (int g = 0; g < rows; g++) acc[g] = _mm512_setzero_ps();
        for (int i = 0; i < D_HEAD; i++) {
            const __m512 keys = bf16_load(0xFFFF, block + i * LANES);
            for (int g = 0; g < rows; g++) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g][i]), keys, acc[g]);
        }
        const __mmask16 keep = b + 1 < blocks ? (__mmask16)0xFFFF : tail;
        for (int g = 0; g < rows; g++) _mm512_mask_storeu_ps(scores + (size_t)g * F + b * LANES, keep, acc[g]);
    }
}

/* out[g][0..64) = sum over frames of weights (rows, F) x values (F, 64): each frame's 64 values (4 vectors) serve every
 * row, read once front to back (values as (64, F) read a row of F per output dimension and summed it across lanes) */
#define VALUE_ROWS 6 /* rows x 4 accumulators, the frame's 4 vectors and a weight: within 32 registers */
static inline __attribute__((always_inline)) void cross_values(const float *weights, const int rows, const uint16_t *v, int F,
                                                                float *const *out) {
    __m512 acc[MAX_ROWS][D_HEAD / LANES]; /* rows <= VALUE_ROWS: BY_ROWS's 7 and 8 are never called */
    for (int g = 0; g < rows; g++)
        for (int c = 0; c < D_HEAD / LANES; c++) acc[g][c] = _mm512_setzero_ps();
    for (int f = 0; f < F; f++) {
        const uint16_t *frame = v + (size_t)f * D_HEAD;
        __m512 values[D_HEAD / LANES];
        for (int c = 0; c < D_HEAD / LANES; c++) values[c] = bf16_load(0xFFFF, frame + c * LANES);
        for (int g = 0; g < rows; g++) {
            const __m512 weight = _mm512_set1_ps(weights[(size_t)g * F + f]);
            for (int c = 0; c < D_HEAD / LANES; c++) acc[g][c] = _mm512_fmadd_ps(weight, values[c], acc[g][c]);
        }
    }
    for (int g = 0; g < rows; g++)
        for (int c = 0; c < D_HEAD / LANES; c++) _mm512_storeu_ps(out[g] + c * LANES, acc[g][c]);
}

/* cross-attention of one audio's rows (its beams) in head h: each pass over the window's keys and values serves up
 * to 16 of them */
static void cross_attention(const step_t *s, int layer, int audio, int h, float *scores) {
    const int d = s->d, H = s->n_head, F = s->frames, G = s->group * s->new, blocks = (F + LANES - 1) / LANES;
    const int window = cache_row(s, audio * s->group) / s->group; /* the audio's place in the cache's cross keys and values */
    const uint16_t *kt = s->cross_kt[layer] + ((size_t)window * H + h) * blocks * D_HEAD * LANES;
    const uint16_t *values = s->cross_v[layer] + ((size_t)window * H + h) * F * D_HEAD;
    for (int g0 = 0; g0 < G; g0 += CROSS_ROWS) {
        const int rows = G - g0 < CROSS_ROWS ? G - g0 : CROSS_ROWS;
        const float *q[CROSS_ROWS];
        float *out[CROSS_ROWS];
        for (int g = 0; g < rows; g++) {
            q[g] = s->cq + (size_t)(audio * G + g0 + g) * d + h * D_HEAD;
            out[g] = s->attn + (size_t)(audio * G + g0 + g) * d + h * D_HEAD;
        }
#define SCORES(n) cross_scores(q, n, kt, F, scores)
        BY_ROWS16(SCORES, rows)
        for (int a = 0; a < s->n_scores; a++)
            if (s->score_layers[a] == layer && s->score_heads[a] == h)
                for (int g = 0; g < rows; g++)
                    memcpy(s->head_scores + ((size_t)a * s->rows + (size_t)audio * G + g0 + g) * F, scores + (size_t)g * F, sizeof(float) * F);
        for (int g = 0; g < rows; g++) softmax(scores + (size_t)g * F, F);
        for (int v0 = 0; v0 < rows; v0 += VALUE_ROWS) {
#define VALUES(n) cross_values(scores + (size_t)v0 * F, n, values, F, out + v0)
            BY_ROWS(VALUES, rows - v0 < VALUE_ROWS ? rows - v0 : VALUE_ROWS)
        }
    }
}

/* this thread's share of the token rows, for the row-wise parts (LayerNorm, quantizing a product's input) */
static inline void row_share(const step_t *s, int t, int *first, int *last) {
    *first = (int)((long)s->rows * t / s->threads), *last = (int)((long)s->rows * (t + 1) / s->threads);
}

/* a product's input made ready: x's rows (after a LayerNorm where `gain` is given) quantized. With few rows each thread
 * does every row into its own buffers (no barrier: the same numbers, a few microseconds); else its share into the
 * shared ones, then a barrier. */
static void prepare(step_t *s, int t, const float *x, const float *gain, const float *bias, int k) {
    const int own = s->rows <= OWN_ROWS, slot = own ? t : 0;
    int r0 = 0, r1 = s->rows;
    if (!own) row_share(s, t, &r0, &r1);
    if (gain) {
        float *h = s->h + (size_t)slot * s->rows * s->d;
        layer_norm(x, r0, r1, k, gain, bias, h);
        x = h;
    }
    quantize_rows(s, slot, x, r0, r1, k);
    if (!own) barrier_wait(&s->barrier);
}

static void run_layer(step_t *s, int t, int layer) {
    const void *const *p = s->params + (size_t)layer * PER_LAYER;
    const int d = s->d, R = s->rows, H = s->n_head, T = s->threads;
    float *scores = s->scores + (size_t)t * s->score_stride;
    prepare(s, t, s->x, p[LN1_G], p[LN1_B], d);
    product(s, t, d, 3 * d, p, QKV_W, s->qkv, STORE);
    barrier_wait(&s->barrier);
    for (int task = t; task < R * H; task += T) self_attention(s, layer, task / H, task % H, scores);
    for (int task = t; task < R * H; task += T) store_new(s, layer, task / H, task % H);
    barrier_wait(&s->barrier); /* a row's heads come from both threads */
    prepare(s, t, s->attn, NULL, NULL, d);
    product(s, t, d, d, p, OUT_W, s->x, ADD);
    barrier_wait(&s->barrier);
    prepare(s, t, s->x, p[LN2_G], p[LN2_B], d);
    product(s, t, d, d, p, CQ_W, s->cq, STORE);
    barrier_wait(&s->barrier);
    for (int task = t; task < (R / (s->group * s->new)) * H; task += T) cross_attention(s, layer, task / H, task % H, scores);
    barrier_wait(&s->barrier);
    prepare(s, t, s->attn, NULL, NULL, d);
    product(s, t, d, d, p, CO_W, s->x, ADD);
    barrier_wait(&s->barrier);
    prepare(s, t, s->x, p[LN3_G], p[LN3_B], d);
    product(s, t, d, 4 * d, p, FC1_W, s->wide, GELU);
    barrier_wait(&s->barrier);
    prepare(s, t, s->wide, NULL, NULL, 4 * d);
    product(s, t, 4 * d, d, p, FC2_W, s->x, ADD);
    barrier_wait(&s->barrier);
}

typedef struct {
    step_t *s;
    int t;
} worker_t;

static void *work(void *arg) {
    const worker_t *w = (const worker_t *)arg;
    step_t *s = w->s;
    while (!atomic_load_explicit(&s->go, memory_order_acquire)) _mm_pause(); /* until the count of threads is known */
    for (int layer = 0; layer < s->n_layer; layer++) run_layer(s, w->t, layer);
    if (s->logits != NULL) { /* the final LayerNorm and the logits on the same threads: no second call and start */
        const void *const *last = s->params + (size_t)s->n_layer * PER_LAYER;
        prepare(s, w->t, s->x, last[0], last[1], s->d);
        product_of(s, w->t, s->d, s->n_vocab, s->vocab_w, s->vocab_s, NULL, s->logits, VOCABULARY);
    }
    return NULL;
}

/* `new` tokens per row (one for a decoding step; a window's prompt is a row per audio with all its tokens).
 * x (rows, new, d): the new tokens' embeddings (token + position), used as the residual stream (overwritten);
 * out (rows, new, d): the final hidden state (after the last LayerNorm), for the logits. params: PER_LAYER pointers per
 * layer, then the final LayerNorm's gain and bias. prefix_k/v[layer]: (rows / group, head, prefix, 64);
 * self_k/v[layer]: (rows, head, capacity, 64), the first `past` positions filled; the new tokens' keys and values are
 * written at positions past .. past + new - 1 (past + new <= capacity); token j attends to the prefix, the filled
 * positions and the new tokens up to itself. n_scores > 0: the cross-attention scores before the softmax of these
 * (score_layers[i], score_heads[i]) into head_scores (n_scores, rows x new, frames) (word timing's alignment heads).
 * cross_kt[layer]: (rows / group, head, frames / 16 rounded up, 64, 16), cross_v[layer]: (rows / group, head, frames,
 * 64), both bfloat16 as cross_bf16 writes them. vocab_w given (the logits' weight and scales packed as logits_int8.c
 * takes them, n_vocab outputs): logits (rows x new, n_vocab) are written instead of out, the same numbers as
 * logits_int8 of out. cache_rows (rows), or NULL: the cache's row of each row, whole audios in order (row r's audio
 * cache_rows[r] / group; `group` consecutive rows one audio's): a batch whose other windows have ended steps the rest
 * in place, their keys and values read and written at their own rows.
 * Returns 0; 1 where the work buffers could not be allocated; 2 for sizes it cannot take. */
int decoder_step(const void *const *params, int n_layer, int n_head, int d, float *x, float *out, int rows, int group, int new,
                 const float *const *prefix_k, const float *const *prefix_v, int prefix, float *const *self_k,
                 float *const *self_v, int capacity, int past, const uint16_t *const *cross_kt, const uint16_t *const *cross_v,
                 int frames, int n_scores, const int *score_layers, const int *score_heads, float *head_scores, const uint8_t *vocab_w,
                 const float *vocab_s, int n_vocab, float *logits, const int *cache_rows, int threads) {
    if (d != n_head * D_HEAD || d % (4 * LANES) || rows < 1 || group < 1 || rows % group || new < 1 || past < 0 ||
        past + new > capacity || prefix < 0 || frames < 1 || (vocab_w != NULL && (vocab_s == NULL || logits == NULL || n_vocab < 1)))
        return 2;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    step_t s = {.params = params, .n_layer = n_layer, .n_head = n_head, .d = d, .rows = rows * new, .group = group, .new = new,
                .prefix = prefix, .capacity = capacity, .past = past, .frames = frames, .threads = threads, .x = x,
                .out = out, .prefix_k = prefix_k, .prefix_v = prefix_v, .cross_kt = cross_kt, .cross_v = cross_v,
                .self_k = self_k, .self_v = self_v, .n_scores = n_scores, .score_layers = score_layers,
                .score_heads = score_heads, .head_scores = head_scores, .vocab_w = vocab_w, .vocab_s = vocab_s, .n_vocab = n_vocab,
                .logits = vocab_w != NULL ? logits : NULL, .cache_rows = cache_rows};
    const int self_need = prefix + capacity, cross_need = CROSS_ROWS * frames;
    rows *= new; /* token rows from here on */
    s.score_stride = ((self_need > cross_need ? self_need : cross_need) + LANES - 1) / LANES * LANES;
    const int slots = rows <= OWN_ROWS ? threads : 1; /* each thread's own quantized inputs (prepare) */
    s.xq = malloc((size_t)slots * rows * 4 * d);
    s.xscale = malloc(sizeof(float) * slots * rows * 4 * d / BLOCK);
    s.xcorr = malloc(sizeof(int32_t) * slots * rows * 4 * d / BLOCK);
    s.h = malloc(sizeof(float) * slots * rows * d);
    s.qkv = malloc(sizeof(float) * rows * 3 * d);
    s.cq = malloc(sizeof(float) * rows * d);
    s.attn = malloc(sizeof(float) * rows * d);
    s.wide = malloc(sizeof(float) * rows * 4 * d);
    s.scores = malloc(sizeof(float) * s.score_stride * threads);
    int status = 0;
    if (!s.xq || !s.xscale || !s.xcorr || !s.h || !s.qkv || !s.cq || !s.attn || !s.wide || !s.scores) {
        status = 1;
        goto done;
    }
    atomic_init(&s.barrier.count, 0);
    atomic_init(&s.barrier.generation, 0);
    atomic_init(&s.go, 0);
    worker_t workers[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started = 1;
    for (; started < threads; started++) {
        workers[started] = (worker_t){&s, started};
        if (pthread_create(&ids[started], NULL, work, &workers[started]) != 0) break;
    }
    /* the barrier counts the threads that run: one that could not start leaves its share to a narrower split */
    s.threads = started;
    s.barrier.n = started;
    atomic_store_explicit(&s.go, 1, memory_order_release);
    workers[0] = (worker_t){&s, 0};
    work(&workers[0]);
    for (int t = 1; t < started; t++) pthread_join(ids[t], NULL);
    if (s.logits == NULL) layer_norm(s.x, 0, rows, d, params[(size_t)n_layer * PER_LAYER], params[(size_t)n_layer * PER_LAYER + 1], out);
done:
    free(s.xq), free(s.xscale), free(s.xcorr), free(s.h), free(s.qkv), free(s.cq), free(s.attn), free(s.wide), free(s.scores);
    return status;
}

/* bfloat16 (rounded to nearest even) of 16 floats */
static inline __m256i to_bf16(__m512 v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16));
}

/* A window's cross keys k (audios x heads, frames, 64) and values vt (audios x heads, 64, frames) as decoder_step
 * reads them: bfloat16, the keys in blocks of 16 frames, kb (audios x heads, frames / 16 rounded up, 64, 16) with zeros
 * after the last frame; the values frames first, vb (audios x heads, frames, 64). The step's working set (weights, these, the logits' table) then fits a 32 MB L3:
 * float32 keys and values alone were 18 MB for tiny.en. */
void cross_bf16(const float *k, const float *vt, int heads, int frames, uint16_t *kb, uint16_t *vb) {
    const int blocks = (frames + LANES - 1) / LANES;
    for (int h = 0; h < heads; h++) {
        const float *kh = k + (size_t)h * frames * D_HEAD;
        uint16_t *out = kb + (size_t)h * blocks * D_HEAD * LANES;
        const __m512i frame_rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                      _mm512_set1_epi32(D_HEAD));
        for (int b = 0; b < blocks; b++) {
            const int count = frames - b * LANES < LANES ? frames - b * LANES : LANES;
            const __mmask16 keep = (__mmask16)((1u << count) - 1);
            for (int i = 0; i < D_HEAD; i++) { /* dimension i of the block's 16 frames, gathered from their rows */
                const __m512 column = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), keep, frame_rows, kh + (size_t)b * LANES * D_HEAD + i, 4);
                _mm256_storeu_si256((__m256i *)(out + ((size_t)b * D_HEAD + i) * LANES), to_bf16(column));
            }
        }
        const float *vh = vt + (size_t)h * D_HEAD * frames;
        uint16_t *vo = vb + (size_t)h * frames * D_HEAD;
        for (int f0 = 0; f0 < frames; f0 += LANES) { /* 16 frames: their 64 rows of vt in bfloat16, then frame by frame */
            const int count = frames - f0 < LANES ? frames - f0 : LANES;
            const __mmask16 keep = (__mmask16)((1u << count) - 1);
            uint16_t block[D_HEAD][LANES];
            for (int i = 0; i < D_HEAD; i++)
                _mm256_storeu_si256((__m256i *)block[i], to_bf16(_mm512_maskz_loadu_ps(keep, vh + (size_t)i * frames + f0)));
            for (int f = 0; f < count; f++)
                for (int i = 0; i < D_HEAD; i++) vo[(size_t)(f0 + f) * D_HEAD + i] = block[i][f];
        }
    }
}
