/* Beam search's per-step choice of candidates (tingxie/decoding/selectors.py), loaded with ctypes; where this was not
 * built, selectors.py does the same in NumPy.
 * - top_k_rows: per row of a (rows x n) float32 matrix, the indices of its k largest entries, largest first, ties by
 *   lower index, in one pass: a block with no entry above the k-th largest so far is passed over after one
 *   comparison per entry, which the compiler vectorizes. NaN entries are never chosen. */
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
