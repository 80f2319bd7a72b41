/* e^x on AVX-512 for x <= 0 (a softmax's x - max), shared by the plain-C extensions (select.c) and the compiled kernels
 * (ort/csrc/decoder_step.c). Marked for AVX-512 so that a file built for any x86-64 can hold it behind a CPU check. */
#ifndef TINGXIE_EXP_AVX512_H
#define TINGXIE_EXP_AVX512_H

#include <immintrin.h>

/* x = m ln 2 + f, a degree-6 polynomial in f (|f| <= ln 2 / 2; relative error ~1e-7), scaled by 2^m; below -87, 0 */
__attribute__((target("avx512f"))) static inline __m512 exp_nonpositive(__m512 x) {
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 m = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(m, _mm512_set1_ps(0.693359375f), x); /* ln 2 in two parts: f exact to float32 */
    f = _mm512_fnmadd_ps(m, _mm512_set1_ps(-2.12194440e-4f), f);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps((__mmask16)~tiny, _mm512_scalef_ps(p, m));
}

#endif
