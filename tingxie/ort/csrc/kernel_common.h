/* What the compiled kernels beside ONNX Runtime share (attention_bf16.c, linear_bf16.c, decoder_step.c, logits_int8.c):
 * vector exp2 and GELU, int8 blocks of activations, running a job's work on threads, and AMX tile set-up (only where
 * the file is compiled for AMX). */
#ifndef TINGXIE_KERNEL_COMMON_H
#define TINGXIE_KERNEL_COMMON_H

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define KERNEL_MAX_THREADS 64

/* 2^x for x <= 0: a degree-5 polynomial on the fraction, scaled by the integer part (error ~2e-6 relative) */
static inline __m512 exp2_ps(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.3333558e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* x * (1 + erf(x / sqrt 2)) / 2, erf by Abramowitz and Stegun 7.1.26 (absolute error < 1.5e-7 before exp2's) */
static inline __m512 gelu_ps(__m512 x) {
    const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(z, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    const __m512 e = exp2_ps(_mm512_mul_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(-1.4426950408889634f)));
    __m512 erf_abs = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0f)); /* erf(|x| / sqrt 2) */
    const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    erf_abs = _mm512_mask_sub_ps(erf_abs, negative, _mm512_setzero_ps(), erf_abs);
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(_mm512_set1_ps(1.0f), erf_abs));
}

/* 32 activations to int8 as MatMulNBits' accuracy level 4 does: scale max |x| / 127, x / scale rounded to nearest even
 * (the default rounding mode, as nearbyintf), and 128 x the sum of the int8 values (the weights' zero point) */
static inline void quantize_block(const float *src, int8_t *dst, float *scale, int32_t *correction) {
    const __m512 low = _mm512_loadu_ps(src), high = _mm512_loadu_ps(src + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(low), _mm512_abs_ps(high)));
    const __m512 inverse = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    const __m512i q_low = _mm512_cvtps_epi32(_mm512_mul_ps(low, inverse)), q_high = _mm512_cvtps_epi32(_mm512_mul_ps(high, inverse));
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(q_low));
    _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtepi32_epi8(q_high));
    *scale = amax / 127.0f;
    *correction = 128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q_low, q_high));
}

/* work(job) on this thread and up to threads - 1 more; returns when all are done (a thread that cannot be started
 * leaves its share to the others, which take work items until none is left) */
static inline void run_threads(void *(*work)(void *), void *job, int threads) {
    pthread_t ids[KERNEL_MAX_THREADS];
    int started = 1;
    for (; started < threads && started < KERNEL_MAX_THREADS; started++)
        if (pthread_create(&ids[started], NULL, work, job) != 0) break;
    work(job);
    for (int i = 1; i < started; i++) pthread_join(ids[i], NULL);
}

#ifdef __AMX_TILE__
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023 /* Linux's arch_prctl request for an extended state component */
#define XFEATURE_XTILEDATA 18      /* the AMX tiles' data */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_config_t;

static void configure_tiles(void) {
    tile_config_t config;
    memset(&config, 0, sizeof(config));
    config.palette = 1;
    for (int t = 0; t < 8; t++) { /* every tile 16 rows of 64 bytes: 32 bf16 or 16 float32 */
        config.rows[t] = 16;
        config.colsb[t] = 64;
    }
    _tile_loadconfig(&config);
}

/* Whether this process may use AMX tiles: Linux grants their state on request (once per process). 1 or 0. */
int amx_ready(void) {
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#endif

#endif
