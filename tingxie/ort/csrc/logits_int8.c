/* The decoder's logits projection (a few rows x d_model against the vocabulary) with 8-bit weights on AVX512-VNNI CPUs.
 *
 * ONNX Runtime's MatMulNBits took time in proportion to the rows (tiny.en's 20 MB projection: 1 row 0.7 ms, 5 rows
 * 1.6 ms, 10 rows 3.6 ms on 2 cores), a quarter of a 5-beam decoder step. Here each pass over a 16-output panel of the
 * weight serves every row (up to 8), so the weight is read once per call. The numbers are those of MatMulNBits at accuracy level 4: weights symmetric per output
 * and block of 32 along K (uint8, zero point 128), each row's activations quantized per block of 32 to int8 (scale
 * max |x| / 127, rounded to nearest even), integer sums per block, scaled and summed in float32.
 *
 * Weights come packed (tingxie/ort/logits.py: pack_weights) as [N / 16][K / 4][16][4] bytes, scales as
 * [N / 16][K / 32][16] floats, N padded to a multiple of 16 (weights 128, scales 0). Called through ctypes, which
 * releases the GIL; the panels are split over `threads` pthreads. Each output depends only on its inputs, never on the thread count or the split.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

#define BLOCK 32
#define LANES 16
#define MAX_ROWS 8
#define MAX_THREADS 64
/* bytes of weight read ahead (the scales: an eighth of it), non-temporal: the weight is read once per call and streams
 * from memory (a 5-row tiny.en call ~10-20 % faster here) */
#define PREFETCH_AHEAD 8192

typedef struct {
    const int8_t *xq;       /* (rows, k) quantized activations */
    const float *xscale;    /* (rows, blocks) */
    const int32_t *xcorr;   /* (rows, blocks): 128 x the block's sum of quantized activations */
    const uint8_t *packed;
    const float *packed_scales;
    float *out;
    int rows, k, n, first, last; /* this worker's panels [first, last) */
} work_t;

/* rows is a constant in each instantiation, so the accumulators stay in registers */
static inline __attribute__((always_inline)) void panels(const work_t *w, const int rows) {
    const int k = w->k, blocks = k / BLOCK;
    for (int p = w->first; p < w->last; p++) {
        const uint8_t *wp = w->packed + (size_t)p * k * LANES;
        const float *sp = w->packed_scales + (size_t)p * blocks * LANES;
        __m512 acc[MAX_ROWS];
        for (int r = 0; r < rows; r++) acc[r] = _mm512_setzero_ps();
        for (int b = 0; b < blocks; b++) {
            __m512i sums[MAX_ROWS];
            for (int r = 0; r < rows; r++) sums[r] = _mm512_set1_epi32(-w->xcorr[r * blocks + b]);
            for (int g = 0; g < BLOCK / 4; g++) {
                _mm_prefetch((const char *)(wp + ((size_t)b * (BLOCK / 4) + g) * LANES * 4 + PREFETCH_AHEAD), _MM_HINT_NTA);
                const __m512i weights = _mm512_loadu_si512(wp + ((size_t)b * (BLOCK / 4) + g) * LANES * 4);
                for (int r = 0; r < rows; r++) {
                    int32_t four;
                    memcpy(&four, w->xq + (size_t)r * k + b * BLOCK + g * 4, 4);
                    sums[r] = _mm512_dpbusd_epi32(sums[r], weights, _mm512_set1_epi32(four));
                }
            }
            _mm_prefetch((const char *)(sp + b * LANES) + PREFETCH_AHEAD / 8, _MM_HINT_NTA);
            const __m512 wscale = _mm512_loadu_ps(sp + b * LANES);
            for (int r = 0; r < rows; r++)
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r]), _mm512_mul_ps(wscale, _mm512_set1_ps(w->xscale[r * blocks + b])), acc[r]);
        }
        const int n0 = p * LANES;
        const __mmask16 keep = n0 + LANES <= w->n ? (__mmask16)0xFFFF : (__mmask16)((1u << (w->n - n0)) - 1);
        for (int r = 0; r < rows; r++) _mm512_mask_storeu_ps(w->out + (size_t)r * w->n + n0, keep, acc[r]);
    }
}

static void *run_work(void *arg) {
    const work_t *w = (const work_t *)arg;
    switch (w->rows) {
    case 1: panels(w, 1); break;
    case 2: panels(w, 2); break;
    case 3: panels(w, 3); break;
    case 4: panels(w, 4); break;
    case 5: panels(w, 5); break;
    case 6: panels(w, 6); break;
    case 7: panels(w, 7); break;
    default: panels(w, 8); break;
    }
    return NULL;
}

/* each row's blocks of 32 to int8, as MatMulNBits' accuracy level 4 does */
static void quantize_rows(const float *x, int rows, int k, int8_t *xq, float *xscale, int32_t *xcorr) {
    const int blocks = k / BLOCK;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < blocks; b++)
            quantize_block(x + (size_t)r * k + b * BLOCK, xq + (size_t)r * k + b * BLOCK, xscale + r * blocks + b, xcorr + r * blocks + b);
}

/* x (rows, k) float32 -> out (rows, n) float32. Returns 0, or 1 where work buffers could not be allocated. */
int logits_int8(const float *x, int rows, int k, const uint8_t *packed, const float *packed_scales, int n, float *out, int threads) {
    const int blocks = k / BLOCK, panels_total = (n + LANES - 1) / LANES;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    int8_t *xq = malloc((size_t)MAX_ROWS * k);
    float *xscale = malloc(sizeof(float) * MAX_ROWS * blocks);
    int32_t *xcorr = malloc(sizeof(int32_t) * MAX_ROWS * blocks);
    if (!xq || !xscale || !xcorr) {
        free(xq), free(xscale), free(xcorr);
        return 1;
    }
    for (int r0 = 0; r0 < rows; r0 += MAX_ROWS) {
        const int group = rows - r0 < MAX_ROWS ? rows - r0 : MAX_ROWS;
        quantize_rows(x + (size_t)r0 * k, group, k, xq, xscale, xcorr);
        work_t work[MAX_THREADS];
        pthread_t ids[MAX_THREADS];
        int joined[MAX_THREADS] = {0};
        for (int t = 0; t < threads; t++)
            work[t] = (work_t){xq, xscale, xcorr, packed, packed_scales, out + (size_t)r0 * n, group, k, n,
                               (int)((long)panels_total * t / threads), (int)((long)panels_total * (t + 1) / threads)};
        for (int t = 1; t < threads; t++) {
            joined[t] = pthread_create(&ids[t], NULL, run_work, &work[t]) == 0;
            if (!joined[t]) run_work(&work[t]); /* no thread to be had: this one does the part */
        }
        run_work(&work[0]);
        for (int t = 1; t < threads; t++)
            if (joined[t]) pthread_join(ids[t], NULL);
    }
    free(xq), free(xscale), free(xcorr);
    return 0;
}
