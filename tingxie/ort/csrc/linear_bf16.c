/* The encoder's products (y = x @ W + bias) with bfloat16 operands on AMX tiles or AVX512-BF16 vectors, float32 sums.
 *
 * ONNX Runtime's int8 products (MatMulInteger) scale each activation tensor as a whole, which costs the int8 models
 * up to 2 points of WER against float32 (issue 23); its float32 products cost ~+120 ms per tiny.en window on a 2-core
 * guest. Here W is packed once (at load, by tingxie.ort.bf16_encoder) in bfloat16 and each product runs as AMX
 * TDPBF16PS over 16 x 16 tiles, or without AMX (Zen 4/5, Cooper Lake) as VDPBF16PS vectors on the same packed W:
 * bfloat16's 8-bit mantissa per operand, sums in float32.
 *
 * Fused around the products, so that no pass over the activations happens in Python: a LayerNorm of x's rows as they
 * are converted to bfloat16 (ln_gamma != NULL), and after the sums the bias, the exact (erf) GELU (LINEAR_GELU) and an
 * add into the output's old values (LINEAR_ACCUMULATE: the residual stream). Called through ctypes, which releases
 * the GIL; the work is split over `threads` pthreads. Each output element depends only on its inputs, never on the
 * thread count or the split.
 *
 * x: m rows of k floats, row r at x + r * ldx (ldx < k: overlapping rows, a convolution's windows over one array).
 * w: [np / 16][kp / 2][16][2] bfloat16, np = n rounded up to 32, kp = k rounded up to 32 (zero padding): for each panel
 * of 16 output columns, pairs of consecutive k (the tiles' B layout). Output column j goes to
 * outs[j / out_cols][r * out_cols + j % out_cols] (one product for several outputs, e.g. q, k and v), or with
 * LINEAR_HEADS / LINEAR_TRANSPOSED to the same output in the decoder's cross K / V layouts (no copy afterwards).
 * LINEAR_BF16_OUT and LINEAR_BF16_IN pass the MLP's hidden layer from one product to the next in bfloat16 (the rounding
 * the second product's conversion would do): its 1500 x 4 * n_state floats were written and read back through memory
 * (~5 of a tiny.en layer's ~7 ms of fc1 went to writing them).
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"


#define LINEAR_GELU 1
#define LINEAR_ACCUMULATE 2
#define LINEAR_HEADS 4      /* outputs (out_cols / 64, m, 64): attention's heads first (not with LINEAR_ACCUMULATE) */
#define LINEAR_TRANSPOSED 8 /* outputs (out_cols, m): column-major (not with LINEAR_ACCUMULATE) */
#define LINEAR_BF16_OUT 16  /* one output, bfloat16 (m rounded up to 32, n): the next product's x as it takes it */
#define LINEAR_BF16_IN 32   /* x is such a bfloat16 output (k a multiple of 32): no conversion */
#define BLOCK 32      /* rows and columns of output per work item: 2 x 2 tiles of 16 x 16 */
#define ROW_CHUNK 32  /* rows per work item while converting x */
#define BAND_BYTES (512 * 1024) /* a band of a's rows in bfloat16: within L2, shared by the threads working on it */
#define MAX_OUTS 64

typedef struct {
    const float *x, *gamma, *beta, *bias;
    const uint16_t *w;
    uint16_t *a; /* x (or its LayerNorm) in bfloat16: mp rows of kp */
    float **outs;
    int m, k, ldx, n, kp, mp, out_cols, flags, tiles;
    int band; /* rows of a per work item: a multiple of BLOCK */
    int chunks;          /* ROW_CHUNKs of x to convert first (0 with LINEAR_BF16_IN) */
    int next_chunk, converted, next; /* taken and finished conversion items, taken product items (atomics) */
} job_t;



static inline __mmask16 first(int count) { return count >= 16 ? 0xFFFF : count <= 0 ? 0 : (__mmask16)((1u << count) - 1); }

/* one row of x into bfloat16 (rounded to nearest even), optionally through LayerNorm (eps 1e-5, as Whisper's) */
static void convert_row(const job_t *j, int r, uint16_t *dst) {
    const int k = j->k;
    if (r >= j->m) {
        memset(dst, 0, sizeof(uint16_t) * j->kp);
        return;
    }
    const float *src = j->x + (size_t)r * j->ldx;
    __m512 shift = _mm512_setzero_ps(), scale = _mm512_set1_ps(1.0f);
    if (j->gamma != NULL) {
        __m512 sum = _mm512_setzero_ps();
        for (int i = 0; i < k; i += 16) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(first(k - i), src + i));
        const float mean = _mm512_reduce_add_ps(sum) / (float)k;
        const __m512 mv = _mm512_set1_ps(mean);
        __m512 sq = _mm512_setzero_ps();
        for (int i = 0; i < k; i += 16) {
            __m512 d = _mm512_maskz_sub_ps(first(k - i), _mm512_maskz_loadu_ps(first(k - i), src + i), mv);
            sq = _mm512_fmadd_ps(d, d, sq);
        }
        const float rstd = 1.0f / sqrtf(_mm512_reduce_add_ps(sq) / (float)k + 1e-5f);
        shift = mv;
        scale = _mm512_set1_ps(rstd);
    }
    for (int i = 0; i < j->kp; i += 16) {
        const __mmask16 valid = first(k - i);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(valid, src + i), shift), scale);
        if (j->gamma != NULL) v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(valid, j->gamma + i), _mm512_maskz_loadu_ps(valid, j->beta + i));
        v = _mm512_maskz_mov_ps(valid, v); /* the padding past k is zero */
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(v));
    }
}



/* sums of output rows r0 .. r0 + 31, columns c0 .. c0 + 31: 2 x 2 tiles over all of k */
static void block_tiles(const job_t *j, int r0, int c0, float sums[BLOCK][BLOCK]) {
    const size_t lda = (size_t)j->kp * 2; /* bytes per row of a */
    const uint16_t *a0 = j->a + (size_t)r0 * j->kp, *a1 = a0 + (size_t)16 * j->kp;
    const uint16_t *b0 = j->w + (size_t)(c0 / 16) * (j->kp / 2) * 32, *b1 = b0 + (size_t)(j->kp / 2) * 32;
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    for (int kb = 0; kb < j->kp; kb += 32) { /* 32 of k per tile: 16 rows of pairs in B */
        _tile_loadd(0, a0 + kb, lda);
        _tile_loadd(1, a1 + kb, lda);
        _tile_loadd(2, b0 + (size_t)kb * 16, 64);
        _tile_loadd(3, b1 + (size_t)kb * 16, 64);
        _tile_dpbf16ps(4, 0, 2);
        _tile_dpbf16ps(5, 0, 3);
        _tile_dpbf16ps(6, 1, 2);
        _tile_dpbf16ps(7, 1, 3);
    }
    _tile_stored(4, &sums[0][0], BLOCK * 4);
    _tile_stored(5, &sums[0][16], BLOCK * 4);
    _tile_stored(6, &sums[16][0], BLOCK * 4);
    _tile_stored(7, &sums[16][16], BLOCK * 4);
}

/* The same sums without tiles (AVX512-BF16: Zen 4/5, Cooper Lake): VDPBF16PS on `rows` rows x 2 panels of 16
 * columns at a time, each k-pair of a row broadcast as one 32-bit value against the panels' zmm of pairs (w's packing
 * is exactly that: a panel's k-pair is 16 columns x 2 bf16, one zmm). 12 + 12 + 8 of the block's 32 rows: 24
 * accumulators, 2 panels and a broadcast in the 32 registers, named one by one (as arrays GCC zeroed them through
 * the stack: ~6 % of the products' time). */
#define ROW_STEP(r)                                                                      \
    if (rows > r) {                                                                      \
        const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[(size_t)(r) * stride + p]); \
        s0_##r = _mm512_dpbf16_ps(s0_##r, x, w0);                                        \
        s1_##r = _mm512_dpbf16_ps(s1_##r, x, w1);                                        \
    }
#define ROW_STORE(r)                                                                     \
    if (rows > r) {                                                                      \
        _mm512_store_ps(&sums[r][0], s0_##r);                                            \
        _mm512_store_ps(&sums[r][16], s1_##r);                                           \
    }
#define ROW_SUMS(r) __m512 s0_##r = _mm512_setzero_ps(), s1_##r = _mm512_setzero_ps();   \
    if (!first && rows > r) s0_##r = _mm512_load_ps(&sums[r][0]), s1_##r = _mm512_load_ps(&sums[r][16])
#define EVERY_ROW(f) f(0) f(1) f(2) f(3) f(4) f(5) f(6) f(7) f(8) f(9) f(10) f(11)
static inline __attribute__((always_inline)) void rows_vectors(const uint32_t *a, const uint32_t *b0, const uint32_t *b1, int pairs,
                                                               int stride, float (*sums)[BLOCK], const int rows, int first) {
    ROW_SUMS(0); ROW_SUMS(1); ROW_SUMS(2); ROW_SUMS(3); ROW_SUMS(4); ROW_SUMS(5);
    ROW_SUMS(6); ROW_SUMS(7); ROW_SUMS(8); ROW_SUMS(9); ROW_SUMS(10); ROW_SUMS(11);
    for (int p = 0; p < pairs; p++) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(b0 + (size_t)p * 16), w1 = (__m512bh)_mm512_loadu_si512(b1 + (size_t)p * 16);
        EVERY_ROW(ROW_STEP)
    }
    EVERY_ROW(ROW_STORE)
}

#define VECTOR_PAIRS 192 /* k-pairs per pass: the two panels' 24 KiB stay in L1 across the block's rows (fc2's k = 1536) */
static void block_vectors(const job_t *j, int r0, int c0, float sums[BLOCK][BLOCK]) {
    const int pairs = j->kp / 2;
    const uint32_t *a = (const uint32_t *)(j->a + (size_t)r0 * j->kp);
    const uint32_t *b0 = (const uint32_t *)(j->w + (size_t)(c0 / 16) * pairs * 32), *b1 = b0 + (size_t)pairs * 16;
    for (int p = 0; p < pairs; p += VECTOR_PAIRS) {
        const int count = pairs - p < VECTOR_PAIRS ? pairs - p : VECTOR_PAIRS;
        rows_vectors(a + p, b0 + (size_t)p * 16, b1 + (size_t)p * 16, count, pairs, sums, 12, p == 0);
        rows_vectors(a + (size_t)12 * pairs + p, b0 + (size_t)p * 16, b1 + (size_t)p * 16, count, pairs, sums + 12, 12, p == 0);
        rows_vectors(a + (size_t)24 * pairs + p, b0 + (size_t)p * 16, b1 + (size_t)p * 16, count, pairs, sums + 24, 8, p == 0);
    }
}

/* output rows r0 .. r0 + 31, columns c0 .. c0 + 31: their sums, then the epilogue */
static void block_product(const job_t *j, int r0, int c0) {
    float sums[BLOCK][BLOCK] __attribute__((aligned(64)));
    if (j->flags & LINEAR_ACCUMULATE) /* the residual stream's rows (past L2) arrive while the sums are made */
        for (int r = r0; r < r0 + BLOCK && r < j->m; r++)
            for (int c = c0; c < c0 + BLOCK && c < j->n; c += 16)
                _mm_prefetch((const char *)(j->outs[c / j->out_cols] + (size_t)r * j->out_cols + c % j->out_cols), _MM_HINT_T0);
    if (j->tiles)
        block_tiles(j, r0, c0, sums);
    else
        block_vectors(j, r0, c0, sums);
    const int rows = j->m - r0 < BLOCK ? j->m - r0 : BLOCK;
    for (int half = 0; half < 2; half++) {
        const int col = c0 + 16 * half;
        if (col >= j->n) break;
        const __mmask16 valid = first(j->n - col);
        const int local = col % j->out_cols;
        float *out = j->outs[col / j->out_cols];
        const __m512 bias = j->bias != NULL ? _mm512_maskz_loadu_ps(valid, j->bias + col) : _mm512_setzero_ps();
        for (int r = 0; r < rows; r++) {
            __m512 v = _mm512_add_ps(_mm512_load_ps(&sums[r][16 * half]), bias);
            if (j->flags & LINEAR_GELU) v = gelu_ps(v);
            if (j->flags & LINEAR_BF16_OUT) {
                uint16_t *dst = (uint16_t *)out + (size_t)(r0 + r) * j->out_cols + local;
                _mm256_storeu_si256((__m256i *)dst, (__m256i)_mm512_cvtneps_pbh(v));
                continue;
            }
            if (j->flags & LINEAR_TRANSPOSED) { /* written column by column below */
                _mm512_store_ps(&sums[r][16 * half], v);
                continue;
            }
            float *dst = j->flags & LINEAR_HEADS ? out + ((size_t)(local / 64) * j->m + r0 + r) * 64 + local % 64
                                                 : out + (size_t)(r0 + r) * j->out_cols + local;
            if (j->flags & LINEAR_ACCUMULATE) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(valid, dst));
            _mm512_mask_storeu_ps(dst, valid, v);
        }
        if (j->flags & LINEAR_TRANSPOSED) { /* each column's 32 rows gathered from the block, stored as one run */
            const __m512i down = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(BLOCK));
            for (int c = 0; c < 16 && col + c < j->n; c++) {
                float *dst = out + (size_t)(local + c) * j->m + r0;
                const float *src = &sums[0][16 * half + c];
                _mm512_mask_storeu_ps(dst, first(rows), _mm512_i32gather_ps(down, src, 4));
                _mm512_mask_storeu_ps(dst + 16, first(rows - 16), _mm512_i32gather_ps(down, src + 16 * BLOCK, 4));
            }
        }
    }
}

static inline int take(int *counter) { return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }

/* each thread converts rows of x while any are left, waits until all are (a product reads every row), then takes
 * products: one thread start per call (two, one per phase, cost ~50 us each: ~1 ms of a tiny.en window's 20 calls) */
static void *work(void *arg) {
    job_t *j = arg;
    for (int c; (c = take(&j->next_chunk)) < j->chunks;) {
        for (int r = c * ROW_CHUNK; r < (c + 1) * ROW_CHUNK; r++) convert_row(j, r, j->a + (size_t)r * j->kp);
        __atomic_fetch_add(&j->converted, 1, __ATOMIC_RELEASE);
    }
    /* a short spin, then yielding: a thread converting may have lost its core to another process (a busy machine) */
    for (int spins = 0; __atomic_load_n(&j->converted, __ATOMIC_ACQUIRE) < j->chunks; spins++)
        if (spins < 2000)
            _mm_pause();
        else
            sched_yield();
    if (j->tiles) configure_tiles();
    /* an item: one block of 32 columns over a band of rows. Its two weight panels stay in L1/L2 through the band; the
     * items of a band (consecutive) share its rows of a, sized to stay in L2. Sweeping all of w for every 32 rows read
     * w from memory each time: ~250 GFLOPS a core, where the tiles do ~1400 from L1. */
    const int column_blocks = (j->n + BLOCK - 1) / BLOCK;
    const int band = j->band, bands = (j->mp + band - 1) / band;
    for (int item; (item = take(&j->next)) < bands * column_blocks;) {
        const int r0 = (item / column_blocks) * band, end = r0 + band < j->mp ? r0 + band : j->mp;
        for (int r = r0; r < end; r += BLOCK) block_product(j, r, (item % column_blocks) * BLOCK);
    }
    if (j->tiles) _tile_release();
    return NULL;
}


/* The bytes of scratch (x in bfloat16) that linear_bf16 needs for m rows of k. */
size_t linear_scratch_bytes(int m, int k) {
    return sizeof(uint16_t) * (size_t)((m + BLOCK - 1) / BLOCK * BLOCK) * ((k + 31) / 32 * 32);
}

/* 0 on success; -1 for arguments out of range. scratch: linear_scratch_bytes(m, k) bytes, 64-byte aligned (unused with
 * LINEAR_BF16_IN, whose x holds as many rows).
 * tiles: AMX's path (amx_ready() must have said 1 in this process), else AVX512-BF16 vectors. */
int linear_bf16(const float *x, int m, int k, int ldx, const float *ln_gamma, const float *ln_beta, const uint16_t *w, int n,
                const float *bias, float **outs, int out_cols, int flags, void *scratch, int threads, int tiles) {
    if (m < 0 || k < 1 || ldx < 1 || n < 1 || out_cols < 16 || out_cols % 16 || (n + out_cols - 1) / out_cols > MAX_OUTS)
        return -1;
    const int layouts = flags & (LINEAR_HEADS | LINEAR_TRANSPOSED | LINEAR_BF16_OUT);
    if ((layouts & (layouts - 1)) || (layouts && flags & LINEAR_ACCUMULATE) || (flags & LINEAR_HEADS && out_cols % 64) ||
        (flags & LINEAR_BF16_OUT && (out_cols != n || n % 32)) || (flags & LINEAR_BF16_IN && (k % 32 || ldx != k || ln_gamma != NULL)))
        return -1;
    if (m == 0) return 0;
    job_t j = {x, ln_gamma, ln_beta, bias, w, scratch, outs, m, k, ldx, n, (k + 31) / 32 * 32, (m + BLOCK - 1) / BLOCK * BLOCK,
               out_cols, flags, tiles != 0, 0, 0, 0, 0, 0};
    j.band = (BAND_BYTES / (j.kp * 2)) / BLOCK * BLOCK;
    if (j.band < BLOCK) j.band = BLOCK;
    if (flags & LINEAR_BF16_IN)
        j.a = (uint16_t *)x;
    else
        j.chunks = j.mp / ROW_CHUNK;
    run_threads(work, &j, threads < 1 ? 1 : threads);
    return 0;
}
