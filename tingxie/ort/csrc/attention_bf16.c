/* The encoder's self-attention (unmasked, 64-wide heads) with bfloat16 products on AVX512-BF16 CPUs.
 *
 * ONNX Runtime's CPU MultiHeadAttention computes in float32: on a 2-core AVX-512 machine it was ~55 % of a tiny.en
 * int8 encoder window. Here the two products run as vdpbf16ps (twice float32's rate), each tile of queries keeps a
 * running maximum and sum (one pass over the keys, no 1500 x 1500 score matrix), and the softmax and all sums stay
 * float32. On CPUs with AMX (attend_tile_amx) the two products run as 16 x 16 tiles instead, ~3x faster on a
 * 2-core Intel Xeon guest, where the vectors were slower than ONNX Runtime's float32 attention. Called through ctypes,
 * which releases the GIL; the work is split over `threads` pthreads.
 *
 * q, k, v, out: (batch, time, n_head * 64) float32, row-major. The result of each query row depends only on its
 * inputs, never on the thread count or the split.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"


#define D_HEAD 64
#define PAIRS (D_HEAD / 2) /* bf16 pairs in a head's row: what one vdpbf16ps lane sums */
#define KEYS 64            /* keys per block: 4 vectors of 16 scores per query row */
#define ROWS 4             /* query rows per tile */
#define CHUNK 64           /* query rows per work item */


typedef struct {
    const float *q, *k, *v;
    float *out;
    int batch, time, n_head, ld, padded;
    uint32_t *keys;   /* per (audio, head): [padded / 16][PAIRS][16] bf16 pairs: 16 keys' dims (2i, 2i + 1) */
    uint32_t *values; /* per (audio, head): [padded / 2][D_HEAD] bf16 pairs: keys (2j, 2j + 1) of one dim */
    int next, phase, amx;
    pthread_mutex_t lock;
} job_t;

static inline size_t head_offset(const job_t *j, int unit) { /* unit = audio * n_head + head */
    return (size_t)(unit / j->n_head) * j->time * j->ld + (size_t)(unit % j->n_head) * D_HEAD;
}

static inline __m512i to_bf16(const float *x, __m512 scale) { /* 32 floats -> 32 bf16, rounded to nearest even */
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(x + 16), scale), _mm512_mul_ps(_mm512_loadu_ps(x), scale));
}

static void pack_keys_and_values(job_t *j, int unit) {
    const int time = j->time, ld = j->ld;
    uint32_t *keys = j->keys + (size_t)unit * j->padded * PAIRS;
    uint32_t *values = j->values + (size_t)unit * (j->padded / 2) * D_HEAD;
    const float *k = j->k + head_offset(j, unit), *v = j->v + head_offset(j, unit);
    const __m512 one = _mm512_set1_ps(1.0f);
    memset(keys, 0, sizeof(uint32_t) * j->padded * PAIRS);
    memset(values, 0, sizeof(uint32_t) * (j->padded / 2) * D_HEAD);
    uint32_t row[PAIRS] __attribute__((aligned(64)));
    for (int t = 0; t < time; t++) {
        const float *r = k + (size_t)t * ld;
        _mm512_store_si512(row, to_bf16(r, one));
        _mm512_store_si512(row + 16, to_bf16(r + 32, one));
        uint32_t *dst = keys + (size_t)(t / 16) * PAIRS * 16 + t % 16;
        for (int i = 0; i < PAIRS; i++) dst[i * 16] = row[i];
    }
    /* interleave the bf16 words of rows 2j and 2j + 1 dim by dim */
    const __m512i first = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                           39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i second = _mm512_add_epi16(first, _mm512_set1_epi16(16));
    for (int t = 0; t < time; t += 2) {
        const float *a = v + (size_t)t * ld;
        __m512i a0 = to_bf16(a, one), a1 = to_bf16(a + 32, one), b0 = _mm512_setzero_si512(), b1 = b0;
        if (t + 1 < time) {
            b0 = to_bf16(a + ld, one);
            b1 = to_bf16(a + ld + 32, one);
        }
        uint32_t *dst = values + (size_t)(t / 2) * D_HEAD;
        _mm512_storeu_si512(dst, _mm512_permutex2var_epi16(a0, first, b0));
        _mm512_storeu_si512(dst + 16, _mm512_permutex2var_epi16(a0, second, b0));
        _mm512_storeu_si512(dst + 32, _mm512_permutex2var_epi16(a1, first, b1));
        _mm512_storeu_si512(dst + 48, _mm512_permutex2var_epi16(a1, second, b1));
    }
}

/* rows t0 .. t0 + ROWS - 1 of one head: scores block by block, a running max and sum per row (online softmax) */
static void attend_tile(const job_t *j, int unit, int t0) {
    const int time = j->time, ld = j->ld, rows = time - t0 < ROWS ? time - t0 : ROWS;
    const uint32_t *keys = j->keys + (size_t)unit * j->padded * PAIRS;
    const uint32_t *values = j->values + (size_t)unit * (j->padded / 2) * D_HEAD;
    const float *q = j->q + head_offset(j, unit);
    const __m512 scale = _mm512_set1_ps(0.125f * 1.4426950408889634f); /* 1/sqrt(64), and base 2 for exp2 */
    uint32_t qb[ROWS][PAIRS] __attribute__((aligned(64)));
    for (int r = 0; r < ROWS; r++) {
        const float *src = q + (size_t)(t0 + (r < rows ? r : 0)) * ld; /* a short last tile repeats its first row */
        _mm512_store_si512(qb[r], to_bf16(src, scale));
        _mm512_store_si512(qb[r] + 16, to_bf16(src + 32, scale));
    }
    float top[ROWS];
    __m512 acc[ROWS][4], total[ROWS]; /* per row: a vector of partial sums, added up at the end */
    for (int r = 0; r < ROWS; r++) {
        top[r] = -INFINITY;
        total[r] = _mm512_setzero_ps();
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    }
    uint32_t pb[ROWS][KEYS / 2] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < time; k0 += KEYS) {
        __m512 s[ROWS][4];
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < 4; c++) s[r][c] = _mm512_setzero_ps();
        const uint32_t *block = keys + (size_t)(k0 / 16) * PAIRS * 16;
        for (int i = 0; i < PAIRS; i++) {
            __m512bh kv[4];
            for (int c = 0; c < 4; c++) kv[c] = (__m512bh)_mm512_load_si512(block + (c * PAIRS + i) * 16);
            for (int r = 0; r < ROWS; r++) {
                __m512bh qv = (__m512bh)_mm512_set1_epi32((int)qb[r][i]);
                for (int c = 0; c < 4; c++) s[r][c] = _mm512_dpbf16_ps(s[r][c], qv, kv[c]);
            }
        }
        if (k0 + KEYS > time) { /* the padding keys past the end get no weight */
            for (int c = 0; c < 4; c++) {
                int valid = time - (k0 + 16 * c);
                __mmask16 keep = valid >= 16 ? 0xFFFF : valid <= 0 ? 0 : (__mmask16)((1u << valid) - 1);
                for (int r = 0; r < ROWS; r++) s[r][c] = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), keep, s[r][c]);
            }
        }
        for (int r = 0; r < ROWS; r++) {
            __m512 mx = _mm512_max_ps(_mm512_max_ps(s[r][0], s[r][1]), _mm512_max_ps(s[r][2], s[r][3]));
            /* the running maximum changes in few blocks: only then is it found and the sums so far rescaled */
            if (_mm512_cmp_ps_mask(mx, _mm512_set1_ps(top[r]), _CMP_GT_OQ)) {
                float new_top = _mm512_reduce_max_ps(mx);
                float rescale = exp2f(top[r] - new_top);
                total[r] = _mm512_mul_ps(total[r], _mm512_set1_ps(rescale));
                top[r] = new_top;
                for (int c = 0; c < 4; c++) acc[r][c] = _mm512_mul_ps(acc[r][c], _mm512_set1_ps(rescale));
            }
            __m512 shift = _mm512_set1_ps(top[r]);
            for (int c = 0; c < 4; c++) {
                s[r][c] = exp2_ps(_mm512_sub_ps(s[r][c], shift));
                total[r] = _mm512_add_ps(total[r], s[r][c]);
            }
            _mm512_store_si512(pb[r], (__m512i)_mm512_cvtne2ps_pbh(s[r][1], s[r][0]));
            _mm512_store_si512(pb[r] + 16, (__m512i)_mm512_cvtne2ps_pbh(s[r][3], s[r][2]));
        }
        const uint32_t *vblock = values + (size_t)(k0 / 2) * D_HEAD;
        for (int p = 0; p < KEYS / 2; p++) {
            __m512bh vv[4];
            for (int c = 0; c < 4; c++) vv[c] = (__m512bh)_mm512_load_si512(vblock + p * D_HEAD + c * 16);
            for (int r = 0; r < ROWS; r++) {
                __m512bh pv = (__m512bh)_mm512_set1_epi32((int)pb[r][p]);
                for (int c = 0; c < 4; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pv, vv[c]);
            }
        }
    }
    float *out = j->out + head_offset(j, unit);
    for (int r = 0; r < rows; r++) {
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(total[r]));
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(out + (size_t)(t0 + r) * ld + 16 * c, _mm512_mul_ps(acc[r][c], inv));
    }
}

/* The same rows with AMX tiles (Sapphire Rapids and later), 16 query rows at a time: the two products as
 * TDPBF16PS over 16 x 16 tiles (the keys' and values' packing above is already the tiles' B layout), the online
 * softmax in AVX-512 between them. Sums are bfloat16 products added in float32, as in attend_tile, in another order. */

#define AMX_ROWS 16
/* tile += A tiles 0 and 1 (32 of the K dimension each) times the B tiles at b0 and b1 (rows `stride` bytes apart) */
#define TILE_PAIR(tile, b0, b1, stride) \
    _tile_loadd(2, b0, stride);         \
    _tile_dpbf16ps(tile, 0, 2);         \
    _tile_loadd(3, b1, stride);         \
    _tile_dpbf16ps(tile, 1, 3);
/* tiles 4..7 are the four 16-wide column blocks of a 16 x 64 float32 result */
#define ZERO_TILES() \
    do { _tile_zero(4); _tile_zero(5); _tile_zero(6); _tile_zero(7); } while (0)
#define STORE_TILES(rows)                                                                          \
    do {                                                                                           \
        _tile_stored(4, &(rows)[0][0], KEYS * 4); _tile_stored(5, &(rows)[0][16], KEYS * 4);     \
        _tile_stored(6, &(rows)[0][32], KEYS * 4); _tile_stored(7, &(rows)[0][48], KEYS * 4);    \
    } while (0)


static void attend_tile_amx(const job_t *j, int unit, int t0) {
    const int time = j->time, ld = j->ld, rows = time - t0 < AMX_ROWS ? time - t0 : AMX_ROWS;
    const uint32_t *keys = j->keys + (size_t)unit * j->padded * PAIRS;
    const uint32_t *values = j->values + (size_t)unit * (j->padded / 2) * D_HEAD;
    const float *q = j->q + head_offset(j, unit);
    const __m512 scale = _mm512_set1_ps(0.125f * 1.4426950408889634f); /* 1/sqrt(64), and base 2 for exp2 */
    uint32_t qb[AMX_ROWS][PAIRS] __attribute__((aligned(64)));   /* the rows' bf16 queries: A tiles of 32 dims */
    float sb[AMX_ROWS][KEYS] __attribute__((aligned(64)));       /* a block's scores, then its weighted values */
    uint32_t pb[AMX_ROWS][KEYS / 2] __attribute__((aligned(64))); /* a block's weights in bf16: A tiles of 32 keys */
    float acc[AMX_ROWS][D_HEAD] __attribute__((aligned(64)));
    float top[AMX_ROWS], total[AMX_ROWS];
    for (int r = 0; r < AMX_ROWS; r++) {
        const float *src = q + (size_t)(t0 + (r < rows ? r : 0)) * ld; /* a short last tile repeats its first row */
        _mm512_store_si512(qb[r], to_bf16(src, scale));
        _mm512_store_si512(qb[r] + 16, to_bf16(src + 32, scale));
        top[r] = -INFINITY;
        total[r] = 0.0f;
        for (int c = 0; c < 4; c++) _mm512_store_ps(acc[r] + 16 * c, _mm512_setzero_ps());
    }
    _tile_loadd(0, qb, PAIRS * 4);          /* dims 0..31 */
    _tile_loadd(1, (char *)qb + 64, PAIRS * 4); /* dims 32..63 */
    for (int k0 = 0; k0 < time; k0 += KEYS) {
        const uint32_t *block = keys + (size_t)(k0 / 16) * PAIRS * 16;
        /* scores: tile 4 + c holds keys k0 + 16c .. k0 + 16c + 15 */
        ZERO_TILES();
#define SCORES(c, tile) TILE_PAIR(tile, block + ((c) * PAIRS) * 16, block + ((c) * PAIRS + 16) * 16, 64)
        SCORES(0, 4) SCORES(1, 5) SCORES(2, 6) SCORES(3, 7)
#undef SCORES
        STORE_TILES(sb);
        __m512 rescale[AMX_ROWS];
        for (int r = 0; r < AMX_ROWS; r++) {
            __m512 s[4];
            for (int c = 0; c < 4; c++) {
                s[c] = _mm512_load_ps(sb[r] + 16 * c);
                const int valid = time - (k0 + 16 * c); /* the padding keys past the end get no weight */
                if (valid < 16) s[c] = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid <= 0 ? 0 : (__mmask16)((1u << valid) - 1), s[c]);
            }
            const float new_top = fmaxf(top[r], _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(s[0], s[1]), _mm512_max_ps(s[2], s[3]))));
            const float shrink = exp2f(top[r] - new_top);
            top[r] = new_top;
            rescale[r] = _mm512_set1_ps(shrink);
            __m512 sum = _mm512_setzero_ps();
            const __m512 shift = _mm512_set1_ps(new_top);
            for (int c = 0; c < 4; c++) {
                s[c] = exp2_ps(_mm512_sub_ps(s[c], shift));
                sum = _mm512_add_ps(sum, s[c]);
            }
            total[r] = total[r] * shrink + _mm512_reduce_add_ps(sum);
            _mm512_store_si512(pb[r], (__m512i)_mm512_cvtne2ps_pbh(s[1], s[0]));
            _mm512_store_si512(pb[r] + 16, (__m512i)_mm512_cvtne2ps_pbh(s[3], s[2]));
        }
        /* weighted values: tile 4 + d holds dims 16d .. 16d + 15; keys k0 .. k0 + 31, then k0 + 32 .. k0 + 63 */
        const uint32_t *vblock = values + (size_t)(k0 / 2) * D_HEAD;
        ZERO_TILES();
        _tile_loadd(0, pb, KEYS * 2);
        _tile_loadd(1, (char *)pb + 64, KEYS * 2);
#define VALUES(d, tile) TILE_PAIR(tile, vblock + 16 * (d), vblock + 16 * D_HEAD + 16 * (d), D_HEAD * 4)
        VALUES(0, 4) VALUES(1, 5) VALUES(2, 6) VALUES(3, 7)
#undef VALUES
        STORE_TILES(sb);
        for (int r = 0; r < AMX_ROWS; r++)
            for (int c = 0; c < 4; c++)
                _mm512_store_ps(acc[r] + 16 * c, _mm512_fmadd_ps(_mm512_load_ps(acc[r] + 16 * c), rescale[r], _mm512_load_ps(sb[r] + 16 * c)));
        _tile_loadd(0, qb, PAIRS * 4); /* the queries again: tiles 0 and 1 held the weights */
        _tile_loadd(1, (char *)qb + 64, PAIRS * 4);
    }
    float *out = j->out + head_offset(j, unit);
    for (int r = 0; r < rows; r++) {
        const __m512 inv = _mm512_set1_ps(1.0f / total[r]);
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(out + (size_t)(t0 + r) * ld + 16 * c, _mm512_mul_ps(_mm512_load_ps(acc[r] + 16 * c), inv));
    }
}

static int take(job_t *j) {
    pthread_mutex_lock(&j->lock);
    int item = j->next++;
    pthread_mutex_unlock(&j->lock);
    return item;
}

static void *work(void *arg) {
    job_t *j = arg;
    const int units = j->batch * j->n_head, chunks = (j->time + CHUNK - 1) / CHUNK;
    if (j->phase == 0) {
        for (int u; (u = take(j)) < units;) pack_keys_and_values(j, u);
    } else {
        if (j->amx) configure_tiles();
        for (int w; (w = take(j)) < units * chunks;) {
            int unit = w / chunks, start = (w % chunks) * CHUNK, stop = start + CHUNK < j->time ? start + CHUNK : j->time;
            if (j->amx)
                for (int t = start; t < stop; t += AMX_ROWS) attend_tile_amx(j, unit, t);
            else
                for (int t = start; t < stop; t += ROWS) attend_tile(j, unit, t);
        }
        if (j->amx) _tile_release();
    }
    return NULL;
}

static void run_phase(job_t *j, int phase, int threads) {
    j->phase = phase;
    j->next = 0;
    run_threads(work, j, threads);
}


/* 0 on success, -1 when the work buffers cannot be allocated. amx: the tiles' path (amx_ready() must have said 1) */
int attention_bf16(const float *q, const float *k, const float *v, float *out, int batch, int time, int n_head, int threads, int amx) {
    job_t j = {q, k, v, out, batch, time, n_head, n_head * D_HEAD, ((time + KEYS - 1) / KEYS) * KEYS, NULL, NULL, 0, 0, amx != 0};
    size_t units = (size_t)batch * n_head;
    j.keys = aligned_alloc(64, sizeof(uint32_t) * units * j.padded * PAIRS);
    j.values = aligned_alloc(64, sizeof(uint32_t) * units * (j.padded / 2) * D_HEAD);
    if (j.keys == NULL || j.values == NULL) {
        free(j.keys);
        free(j.values);
        return -1;
    }
    pthread_mutex_init(&j.lock, NULL);
    run_phase(&j, 0, threads < 1 ? 1 : threads);
    run_phase(&j, 1, threads < 1 ? 1 : threads);
    pthread_mutex_destroy(&j.lock);
    free(j.keys);
    free(j.values);
    return 0;
}
