/* fp32 CPU kernels for the Engine's decode step (llm_core/cpu_kernels/decode.py says why and when).
 *
 * A decode step of gpt2-mini is 2.2-2.7 ms, so a torch op's few microseconds of dispatch, allocation and
 * thread wake-up count: sampling took 15-25 small ops a step and attention three per layer. Each kernel
 * here is one call. Built and threaded as bf16_kernels.c is (build.py).
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include "simd.h"

/* out[2 i] = max of row i, out[2 i + 1] = its min (V fp32 values at x + i * ld); NaN for both where the row
 * holds a NaN. */
void wb_row_max_min_f32(const float *x, int64_t B, int64_t V, int64_t ld, float *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < B; i++) {
        const float *xi = x + i * ld;
        __m512 hi = _mm512_set1_ps(-INFINITY), lo = _mm512_set1_ps(INFINITY);
        __mmask16 nan = 0;
        for (int64_t j = 0; j < V; j += 16) {
            __mmask16 m = lanes(V - j);
            __m512 v = _mm512_maskz_loadu_ps(m, xi + j);
            nan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
            hi = _mm512_mask_max_ps(hi, m, hi, v);
            lo = _mm512_mask_min_ps(lo, m, lo, v);
        }
        out[2 * i] = nan ? NAN : _mm512_reduce_max_ps(hi);
        out[2 * i + 1] = nan ? NAN : _mm512_reduce_min_ps(lo);
    }
}

#define BLOCK 1024 /* tokens per block of the two-level cumulative sum, as sampling.draw */

/* Temperature sampling by inverse transform, one token per selected row: row rows[k] of x (V fp32 logits
 * at x + rows[k] * ld) with weights w_j = exp((x_j - top[k]) inv_t) (top[k] >= every x_j, so w <= 1 and the
 * top token's is 1), and u[k] in [0, 1): the first token whose cumulative weight exceeds u[k] times the
 * total. Two levels, as sampling.draw: fp32 sums of blocks of 1024 weights, accumulated in fp64 to find the
 * block, then an fp64 running sum inside it; where rounding puts the target past the last block's sum,
 * the last positive token. The weights are kept in scratch (V + 16 floats per thread) between the passes. */
void wb_temperature_draw_f32(const float *x, int64_t n, const int64_t *rows, int64_t V, int64_t ld,
                             const float *top, float inv_t, const double *u, int64_t *tokens, float *scratch,
                             double *block_sums, int threads) {
    const int64_t nb = (V + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num();
        float *w = scratch + (int64_t)tid * (V + 16);
        double *sums = block_sums + (int64_t)tid * nb;
#pragma omp for schedule(static)
        for (int64_t k = 0; k < n; k++) {
            const float *xi = x + rows[k] * ld;
            __m512 t = _mm512_set1_ps(top[k]), s = _mm512_set1_ps(inv_t);
            double total = 0.0;
            int64_t last_block = 0;
            for (int64_t b = 0; b < nb; b++) {
                int64_t end = (b + 1) * BLOCK < V ? (b + 1) * BLOCK : V;
                __m512 acc = _mm512_setzero_ps();
                for (int64_t j = b * BLOCK; j < end; j += 16) {
                    __mmask16 m = lanes(end - j);
                    __m512 v = _mm512_maskz_mov_ps(m, exp_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xi + j), t), s)));
                    _mm512_storeu_ps(w + j, v);
                    acc = _mm512_add_ps(acc, v);
                }
                sums[b] = (double)_mm512_reduce_add_ps(acc);
                total += sums[b];
                if (sums[b] > 0.0) last_block = b;
            }
            double target = u[k] * total, before = 0.0;
            int64_t b = 0;
            while (b < nb && before + sums[b] <= target) before += sums[b++];
            double rest = target - before;
            if (b == nb) { /* rounding: the target is past every block's sum */
                b = last_block;
                rest = INFINITY;
            }
            int64_t end = (b + 1) * BLOCK < V ? (b + 1) * BLOCK : V, token = -1, last = -1;
            double c = 0.0;
            for (int64_t j = b * BLOCK; j < end; j++) {
                if (w[j] > 0.0f) last = j;
                c += w[j];
                if (c > rest) {
                    token = j;
                    break;
                }
            }
            tokens[k] = token >= 0 ? token : last;
        }
    }
}

/* Attention of one new query per (row, head) over a cache of fp32 keys and values (row b, head h at
 * K + b * c_sb + h * c_sh, D floats per position, D a multiple of 16 up to 256): first writes the new key
 * and value at position pos, then out = softmax(q . K[0..pos] * scale) V[0..pos], (B, H, D) contiguous.
 * q, k_new and v_new share their strides (the Engine's step views them in one (B, 3, H, D) output). */
#define MAX_D 256
void wb_one_query_attention_f32(const float *q, const float *k_new, const float *v_new, int64_t in_sb,
                                int64_t in_sh, float *K, float *V, int64_t c_sb, int64_t c_sh, int64_t pos,
                                float *out, int64_t B, int64_t H, int64_t D, float scale, float *scratch,
                                int threads) {
    const int64_t L = pos + 1, nv = D / 16;
#pragma omp parallel num_threads(threads)
    {
        float *s = scratch + (int64_t)omp_get_thread_num() * (L + 16);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < B * H; t++) {
            int64_t b = t / H, h = t % H, in = b * in_sb + h * in_sh;
            float *Kt = K + b * c_sb + h * c_sh, *Vt = V + b * c_sb + h * c_sh;
            __m512 qv[MAX_D / 16], o[MAX_D / 16];
            for (int64_t d = 0; d < nv; d++) {
                _mm512_storeu_ps(Kt + pos * D + 16 * d, _mm512_loadu_ps(k_new + in + 16 * d));
                _mm512_storeu_ps(Vt + pos * D + 16 * d, _mm512_loadu_ps(v_new + in + 16 * d));
                qv[d] = _mm512_loadu_ps(q + in + 16 * d);
                o[d] = _mm512_setzero_ps();
            }
            float top = -INFINITY;
            for (int64_t j = 0; j < L; j++) {  /* scores */
                const float *kj = Kt + j * D;
                __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
                for (int64_t d = 1; d < nv; d++) a = _mm512_fmadd_ps(qv[d], _mm512_loadu_ps(kj + 16 * d), a);
                float v = _mm512_reduce_add_ps(a) * scale;
                s[j] = v;
                top = v > top ? v : top;
            }
            __m512 m = _mm512_set1_ps(top), sum = _mm512_setzero_ps();
            for (int64_t j = 0; j < L; j += 16) {  /* softmax numerators */
                __mmask16 k = lanes(L - j);
                __m512 e = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), m)));
                _mm512_mask_storeu_ps(s + j, k, e);
                sum = _mm512_add_ps(sum, e);
            }
            for (int64_t j = 0; j < L; j++) {  /* weighted values */
                const float *vj = Vt + j * D;
                __m512 p = _mm512_set1_ps(s[j]);
                for (int64_t d = 0; d < nv; d++) o[d] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 16 * d), o[d]);
            }
            __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
            for (int64_t d = 0; d < nv; d++) _mm512_storeu_ps(out + t * D + 16 * d, _mm512_mul_ps(o[d], inv));
        }
    }
}
