/* The selectors' per-step work over a step's logits (tingxie/decoding/selectors.py), loaded with ctypes; where this
 * was not built, selectors.py does the same in NumPy.
 * - top_k_rows: per row of a (rows x n) float32 matrix, the indices of its k largest entries, largest first, ties by
 *   lower index, in one pass: a block with no entry above the k-th largest so far is passed over after one
 *   comparison per entry, which the compiler vectorizes. NaN entries are never chosen.
 * - exp_sums: per row of a (rows x n) float32 matrix, its largest entry and the sum of exp(entry - largest), summed in
 *   double (a row of only -inf: -inf and 0): log-softmax's normaliser in one pass over the row after its maximum,
 *   without the two (rows x n) arrays NumPy's x - max and exp(x - max) are (~0.1 ms a beam-5 step of tiny.en).
 *   AVX-512 where the CPU has it (exp as a polynomial, relative error ~1e-7), else the C library's expf. */
#include <math.h>
#include <stdint.h>

#define BLOCK 64
#define MAX_K 64

/* Puts (v, i) into the descending list vals/idx of *count (<= k) entries; a full list drops its last. Equal values
 * stay ahead of it: they came first, with lower indices. */
static void insert(float *vals, int64_t *idx, int64_t *count, int64_t k, float v, int64_t i) {
    int64_t at = *count < k ? *count : k - 1;
    while (at > 0 && vals[at - 1] < v) {
        vals[at] = vals[at - 1];
        idx[at] = idx[at - 1];
        at--;
    }
    vals[at] = v;
    idx[at] = i;
    if (*count < k) (*count)++;
}

/* x: rows x n row-major; out: rows x k indices. Returns 0, or -1 when k is not in 1..min(n, MAX_K) or a row has
 * fewer than k entries that are not NaN (out is then undefined). */
int top_k_rows(const float *x, int64_t rows, int64_t n, int64_t k, int64_t *out) {
    if (k < 1 || k > MAX_K || k > n) return -1;
    float vals[MAX_K];
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * n;
        int64_t *idx = out + r * k, count = 0, i = 0;
        for (; i < n && count < k; i++)  /* the first k entries that are not NaN fill the list */
            if (row[i] == row[i]) insert(vals, idx, &count, k, row[i], i);
        if (count < k) return -1;
        for (; i < n && i % BLOCK; i++)
            if (row[i] > vals[k - 1]) insert(vals, idx, &count, k, row[i], i);
        for (; i + BLOCK <= n; i += BLOCK) {
            const float least = vals[k - 1];
            int above = 0;
            for (int j = 0; j < BLOCK; j++) above |= row[i + j] > least;
            if (!above) continue;
            for (int j = 0; j < BLOCK; j++)
                if (row[i + j] > vals[k - 1]) insert(vals, idx, &count, k, row[i + j], i + j);
        }
        for (; i < n; i++)
            if (row[i] > vals[k - 1]) insert(vals, idx, &count, k, row[i], i);
    }
    return 0;
}

static void exp_sums_plain(const float *x, int64_t rows, int64_t n, float *peak, double *sum) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * n;
        float top = -INFINITY;
        for (int64_t i = 0; i < n; i++) top = row[i] > top ? row[i] : top;
        double total = 0.0;
        if (top != -INFINITY)
            for (int64_t i = 0; i < n; i++) total += (double)expf(row[i] - top);
        peak[r] = top;
        sum[r] = total;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include "exp_avx512.h"

__attribute__((target("avx512f"))) static void exp_sums_avx512(const float *x, int64_t rows, int64_t n, float *peak, double *sum) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * n;
        __m512 high = _mm512_set1_ps(-INFINITY);
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) high = _mm512_max_ps(high, _mm512_loadu_ps(row + i));
        float top = _mm512_reduce_max_ps(high);
        for (; i < n; i++) top = row[i] > top ? row[i] : top;
        double total = 0.0;
        if (top != -INFINITY) {
            const __m512 shift = _mm512_set1_ps(top);
            __m512d low_sum = _mm512_setzero_pd(), high_sum = _mm512_setzero_pd();
            for (i = 0; i + 16 <= n; i += 16) {
                const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(row + i), shift));
                low_sum = _mm512_add_pd(low_sum, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
                high_sum = _mm512_add_pd(high_sum, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
            }
            total = _mm512_reduce_add_pd(_mm512_add_pd(low_sum, high_sum));
            for (; i < n; i++) total += (double)expf(row[i] - top);
        }
        peak[r] = top;
        sum[r] = total;
    }
}
#endif

void exp_sums(const float *x, int64_t rows, int64_t n, float *peak, double *sum) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f")) {
        exp_sums_avx512(x, rows, n, peak, sum);
        return;
    }
#endif
    exp_sums_plain(x, rows, n, peak, sum);
}
