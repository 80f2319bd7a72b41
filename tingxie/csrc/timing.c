/* Word timestamps' compiled parts (tingxie/timing.py), loaded with ctypes; where this was not built, timing.py does
 * the same in NumPy.
 * - dtw_fill: the minimum-cost monotonic path through a (tokens x frames) cost matrix, filled row by row with the
 *   same float32 accumulator, float64 additions and tie order (diagonal, then up, then left) as the reference's
 *   loop, so paths are identical.
 * - median7_rows: the attention weights' median filter of width 7, exactly the values of the reference's sort. */
#include <math.h>
#include <stdint.h>

/* cost: n x m row-major float64; acc: (n+1) x (m+1) float32 scratch; trace: (n+1) x (m+1) int8, filled with
 * 0 (diagonal), 1 (up), 2 (left) for i, j >= 1 (the caller sets the borders). */
int dtw_fill(const double *cost, int64_t n, int64_t m, float *acc, int8_t *trace) {
    const int64_t w = m + 1;
    for (int64_t j = 0; j <= m; j++) acc[j] = INFINITY;
    acc[0] = 0.0f;
    for (int64_t i = 1; i <= n; i++) {
        float *row = acc + i * w, *up = acc + (i - 1) * w;
        int8_t *t = trace + i * w;
        row[0] = INFINITY;
        for (int64_t j = 1; j <= m; j++) {
            float c0 = up[j - 1], c1 = up[j], c2 = row[j - 1], c;
            int8_t step;
            if (c0 < c1 && c0 < c2) {
                c = c0; step = 0;
            } else if (c1 < c0 && c1 < c2) {
                c = c1; step = 1;
            } else {
                c = c2; step = 2;
            }
            row[j] = (float)(cost[(i - 1) * m + (j - 1)] + (double)c);
            t[j] = step;
        }
    }
    return 0;
}

/* a <- min(a, b), b <- max(a, b): no NaN reaches here (they are +inf), so the plain comparison is exact */
#define EXCHANGE(a, b) do { float lo_ = (a) < (b) ? (a) : (b); float hi_ = (a) < (b) ? (b) : (a); (a) = lo_; (b) = hi_; } while (0)

/* x, out: rows x n row-major float32, n > 3; padded: n + 6 float32 scratch. Each value becomes the median of the 7
 * around it, the row reflected at its ends (NumPy's "reflect": the edge not repeated); NaN sorts last, so a window
 * holding 4 or more NaNs gives NaN, as a sort-based filter does. A 16-comparator sorting network of 7 inputs (the
 * compiler keeps those the middle rank needs) on every position at once: the loop over positions vectorizes. */
int median7_rows(const float *x, int64_t rows, int64_t n, float *padded, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * n;
        float *dst = out + r * n;
        int nans = 0;
        for (int64_t j = 0; j < n; j++) {
            float v = row[j];
            if (v != v) { nans = 1; v = INFINITY; }
            padded[j + 3] = v;
        }
        for (int k = 1; k <= 3; k++) {
            padded[3 - k] = padded[3 + k];
            padded[n + 2 + k] = padded[n + 2 - k];
        }
        for (int64_t j = 0; j < n; j++) {
            float a = padded[j], b = padded[j + 1], c = padded[j + 2], d = padded[j + 3], e = padded[j + 4],
                  f = padded[j + 5], g = padded[j + 6];
            EXCHANGE(a, g); EXCHANGE(c, d); EXCHANGE(e, f);
            EXCHANGE(a, c); EXCHANGE(b, e); EXCHANGE(d, g);
            EXCHANGE(a, b); EXCHANGE(c, f); EXCHANGE(d, e);
            EXCHANGE(b, c); EXCHANGE(e, g);
            EXCHANGE(c, d); EXCHANGE(e, f);
            EXCHANGE(b, c); EXCHANGE(d, e); EXCHANGE(f, g);
            dst[j] = d;
        }
        if (nans) {
            for (int64_t j = 0; j < n; j++) {
                int count = 0;
                for (int k = 0; k < 7; k++) {
                    int64_t i = j + k - 3;
                    i = i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
                    count += row[i] != row[i];
                }
                if (count > 3) dst[j] = NAN;
            }
        }
    }
    return 0;
}
