/* A probe, not part of fastrnn: would the gate passes' divisions run faster
   as a reciprocal estimate refined by Newton steps (no divider), and would
   they keep their bits? The float32 sigmoid of the kernels (the exponential
   of _activations.pxd, then 1 / (1 + e^-x)) over 32768 values, 16 lanes at a
   time: with the division, and with vrcp14ps and two Newton steps; then the
   reciprocal 1/d both ways for every float d in [1, 2^20), counting
   the results that differ from the correctly rounded division (docs/performance.md,
   "Measured this session and not kept").

       gcc -O3 -march=x86-64-v4 bench/probe_reciprocal.c -o /tmp/probe_rcp
       taskset -c 1 /tmp/probe_rcp
*/
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
/* e^x as exp_f32 in fastrnn/_kernels/_activations.pxd, 16 lanes */
static inline __m512 expv(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(12582912.0f)),
                           _mm512_set1_ps(12582912.0f));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f),
                              _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x));
  __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(0.001381460013170969f), _mm512_set1_ps(0.008368707930285657f));
  p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(0.0416683873741894f));
  p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(0.1666652070576536f));
  p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(0.4999999345237087f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(r, r), p, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}
static inline __m512 recip_div(__m512 d) { return _mm512_div_ps(_mm512_set1_ps(1.0f), d); }
static inline __m512 recip_newton(__m512 d) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 y = _mm512_rcp14_ps(d);
  y = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, y, one), y, y);
  return _mm512_fmadd_ps(_mm512_fnmadd_ps(d, y, one), y, y);
}
int main(void) {
  enum { N = 32768 };
  float *g = aligned_alloc(64, N * sizeof(float)), *g0 = aligned_alloc(64, N * sizeof(float));
  for (int i = 0; i < N; i++) g0[i] = (float) (rand() % 4000 - 2000) / 500.0f;
  for (int newton = 0; newton < 2; newton++) {
    double best = 1e9;
    for (int rep = 0; rep < 30; rep++) {
      memcpy(g, g0, N * sizeof(float));
      double t = now();
      for (int it = 0; it < 20; it++)
        for (int k = 0; k < N; k += 16) {
          __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), expv(_mm512_sub_ps(_mm512_setzero_ps(),
                                                                          _mm512_load_ps(g + k))));
          _mm512_store_ps(g + k, newton ? recip_newton(d) : recip_div(d));
        }
      double dt = (now() - t) / 20 / N;
      if (dt < best) best = dt;
    }
    printf("sigmoid, %s: %.3f ns per value\n", newton ? "rcp14 + 2 Newton steps" : "division", best * 1e9);
  }
  long differ = 0, total = 0;
  for (unsigned u = 0x3f800000u; u < 0x49800000u; u += 16) {
    float d[16], a[16], b[16];
    for (int j = 0; j < 16; j++) { unsigned v = u + j; memcpy(&d[j], &v, 4); }
    __m512 dv = _mm512_loadu_ps(d);
    _mm512_storeu_ps(a, recip_div(dv));
    _mm512_storeu_ps(b, recip_newton(dv));
    for (int j = 0; j < 16; j++, total++) differ += memcmp(&a[j], &b[j], 4) != 0;
  }
  printf("1/d, every float d in [1, 2^20): %ld of %ld differ from the division\n", differ, total);
  return 0;
}
