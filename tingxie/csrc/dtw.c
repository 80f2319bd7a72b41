/* Dynamic time warping for word timestamps (tingxie/timing.py): the minimum-cost monotonic path through a
 * (tokens x frames) cost matrix, filled row by row with the same float32 accumulator, float64 additions and
 * tie order (diagonal, then up, then left) as the reference's loop, so paths are identical. Loaded with ctypes;
 * where it was not built, timing.py fills the same matrix with NumPy. */
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
