/* bf16 CPU kernels for training under autocast (llm_core/cpu_kernels/__init__.py says why and when).
 *
 * Built on first use by build.py with the machine's C compiler: cc -O3 -march=native -fopenmp. OpenMP binds
 * to the libgomp torch has already loaded (the same soname), so these kernels share torch's thread team.
 * Every function takes the thread count from the caller (torch.get_num_threads()).
 *
 * bf16 is the upper half of an fp32: widened by a 16-bit shift, rounded back to nearest-even (NaN kept).
 * exp (simd.h) is about 1 ulp in fp32, far below the bf16 rounding that follows.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include "simd.h"

int wb_kernels_abi(void) { return 2; }

static inline float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Cross-entropy of `rows` rows of bf16 logits z (row i at z + i * ld, V of them) against targets:
 * loss[i] = logsumexp(z_i) - z_i[y_i] in fp32, and, where grad is not NULL, the gradient of that loss,
 * softmax(z_i) - onehot(y_i), rounded to bf16 into grad (which may be z itself). One exp per logit: the
 * exps of a row are kept in fp32 in scratch (V + 16 floats per thread) between the sum and the scaling.
 * A row holding a NaN gets a NaN loss and a NaN gradient. */
void wb_cross_entropy_bf16(const uint16_t *z, uint16_t *grad, int64_t rows, int64_t V, int64_t ld,
                           const int64_t *targets, float *loss, float *scratch, int threads) {
#pragma omp parallel num_threads(threads)
    {
        float *e = scratch + (int64_t)omp_get_thread_num() * (V + 16);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; i++) {
            const uint16_t *zi = z + i * ld;
            __m512 top = _mm512_set1_ps(-INFINITY);
            __mmask16 nan = 0;
            for (int64_t j = 0; j < V; j += 16) {
                __mmask16 m = lanes(V - j);
                __m512 v = load_bf16(zi + j, m);
                nan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
                top = _mm512_mask_max_ps(top, m, top, v);
            }
            float mx = _mm512_reduce_max_ps(top);
            if (nan || isinf(mx) || isnan(mx)) {  /* NaN or +-inf logits: no finite softmax */
                loss[i] = NAN;
                if (grad)
                    for (int64_t j = 0; j < V; j += 16) store_bf16(grad + i * ld + j, _mm512_set1_ps(NAN), lanes(V - j));
                continue;
            }
            __m512 shift = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
            for (int64_t j = 0; j < V; j += 16) {
                __mmask16 m = lanes(V - j);
                __m512 v = _mm512_maskz_mov_ps(m, exp_ps(_mm512_sub_ps(load_bf16(zi + j, m), shift)));
                _mm512_storeu_ps(e + j, v);
                sum = _mm512_add_ps(sum, v);
            }
            float s = _mm512_reduce_add_ps(sum);
            int64_t y = targets[i];
            loss[i] = mx + logf(s) - bf16_to_float(zi[y]);
            if (grad) {
                uint16_t *gi = grad + i * ld;
                float p_y = e[y] * (1.0f / s);
                __m512 inv = _mm512_set1_ps(1.0f / s);
                for (int64_t j = 0; j < V; j += 16)
                    store_bf16(gi + j, _mm512_mul_ps(_mm512_loadu_ps(e + j), inv), lanes(V - j));
                store_bf16(gi + y, _mm512_set1_ps(p_y - 1.0f), 1);
            }
        }
    }
}

/* GPT-2's GELU, 0.5 x (1 + tanh(u)) with u = sqrt(2 / pi) (x + 0.044715 x^3), from e = exp(-2 |u|) and
 * q = 2 / (1 + e): 1 + tanh(u) is q for u >= 0 and q e below (no cancellation for large negative x),
 * and 1 - tanh(u)^2 = q^2 e for the derivative. */
static const float K0 = 0.7978845608028654f, K1 = 0.044715f;

static inline void gelu_parts(__m512 x, __m512 *one_plus_t, __m512 *sech2, __m512 *du) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = _mm512_mul_ps(_mm512_set1_ps(K0), _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(K1), x), x2, x));
    __m512 e = exp_ps(_mm512_mul_ps(_mm512_abs_ps(u), _mm512_set1_ps(-2.0f)));
    __m512 q = _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    __mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
    *one_plus_t = _mm512_mask_mul_ps(q, neg, q, e);
    if (sech2) {
        *sech2 = _mm512_mul_ps(_mm512_mul_ps(q, q), e);
        *du = _mm512_mul_ps(_mm512_set1_ps(K0), _mm512_fmadd_ps(_mm512_set1_ps(3.0f * K1), x2, _mm512_set1_ps(1.0f)));
    }
}

void wb_gelu_tanh_bf16(const uint16_t *x, uint16_t *y, int64_t n, int threads) {
    int64_t blocks = (n + 15) / 16;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        __mmask16 m = lanes(n - b * 16);
        __m512 v = load_bf16(x + b * 16, m), opt;
        gelu_parts(v, &opt, NULL, NULL);
        store_bf16(y + b * 16, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), opt), m);
    }
}

/* dx = g * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx) */
void wb_gelu_tanh_backward_bf16(const uint16_t *g, const uint16_t *x, uint16_t *dx, int64_t n, int threads) {
    int64_t blocks = (n + 15) / 16;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        __mmask16 m = lanes(n - b * 16);
        __m512 v = load_bf16(x + b * 16, m), opt, sech2, du;
        gelu_parts(v, &opt, &sech2, &du);
        __m512 half = _mm512_set1_ps(0.5f);
        __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(half, v), sech2), du, _mm512_mul_ps(half, opt));
        store_bf16(dx + b * 16, _mm512_mul_ps(load_bf16(g + b * 16, m), d), m);
    }
}
