/* A probe, not part of fastrnn: can the batch-1 input projection (FMA-bound)
   hide under the one-row recurrent product (bound by streaming W_hh from L2)
   when both run in one loop over k? One thread's share of LSTM H=256: 512 KiB
   of W_hh panels; per step 4 of the 32 W_ih panels times 8 input rows. Prints
   the time per step of the product alone, the product then the projection,
   and both in one loop (docs/performance.md, "Probed and not built").

       gcc -O3 -march=x86-64-v4 bench/probe_fused_projection.c -o /tmp/probe
       taskset -c 1 /tmp/probe
*/
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define K 256
#define NP 32          /* panels of 16 columns: 512 columns = one thread's share, LSTM H=256 */
#define R 8            /* rows of the projection per step */
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
/* one row: c[p] = sum_k h[k] * W[p][k][:] */
__attribute__((noinline)) void rowprod(const float *h, const float *W, float *c) {
  for (int p = 0; p < NP; p += 8) {
    __m512 s[8]; for (int q = 0; q < 8; q++) s[q] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
      __m512 hv = _mm512_set1_ps(h[k]);
      for (int q = 0; q < 8; q++) s[q] = _mm512_fmadd_ps(hv, _mm512_loadu_ps(W + ((p + q) * K + k) * 16), s[q]);
    }
    for (int q = 0; q < 8; q++) _mm512_storeu_ps(c + (p + q) * 16, s[q]);
  }
}
/* projection of R rows on panels [p0, p0+np) of Wi */
__attribute__((noinline)) void proj(const float *x, const float *Wi, float *g, int p0, int np) {
  for (int p = p0; p < p0 + np; p++) {
    __m512 s[R]; for (int r = 0; r < R; r++) s[r] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
      __m512 w = _mm512_loadu_ps(Wi + (p * K + k) * 16);
      for (int r = 0; r < R; r++) s[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * K + k]), w, s[r]);
    }
    for (int r = 0; r < R; r++) _mm512_storeu_ps(g + r * NP * 16 + p * 16, s[r]);
  }
}
/* fused: per group of 8 W_hh panels, one W_ih panel for R rows, in the same k loop */
__attribute__((noinline)) void fused(const float *h, const float *W, float *c, const float *x, const float *Wi, float *g, int p0) {
  for (int p = 0, pi = p0; p < NP; p += 8, pi++) {
    __m512 s[8], t[R];
    for (int q = 0; q < 8; q++) s[q] = _mm512_setzero_ps();
    for (int r = 0; r < R; r++) t[r] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
      __m512 hv = _mm512_set1_ps(h[k]);
      for (int q = 0; q < 8; q++) s[q] = _mm512_fmadd_ps(hv, _mm512_loadu_ps(W + ((p + q) * K + k) * 16), s[q]);
      __m512 w = _mm512_loadu_ps(Wi + (pi * K + k) * 16);
      for (int r = 0; r < R; r++) t[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * K + k]), w, t[r]);
    }
    for (int q = 0; q < 8; q++) _mm512_storeu_ps(c + (p + q) * 16, s[q]);
    for (int r = 0; r < R; r++) _mm512_storeu_ps(g + r * NP * 16 + pi * 16, t[r]);
  }
}
int main(void) {
  float *W = aligned_alloc(64, NP * K * 16 * 4), *Wi = aligned_alloc(64, NP * K * 16 * 4);
  float h[K], x[R * K], c[NP * 16], g[R * NP * 16];
  for (int i = 0; i < NP * K * 16; i++) { W[i] = (i % 7) * 0.01f; Wi[i] = (i % 5) * 0.01f; }
  for (int i = 0; i < K; i++) h[i] = 0.001f * i;
  for (int i = 0; i < R * K; i++) x[i] = 0.002f * i;
  int steps = 20000;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = now();
    for (int s = 0; s < steps; s++) { rowprod(h, W, c); h[s % K] += c[s % 64] * 1e-9f; }
    double t1 = now();
    for (int s = 0; s < steps; s++) { rowprod(h, W, c); proj(x, Wi, g, (s % 8) * 4, 4); h[s % K] += c[s % 64] * 1e-9f; }
    double t2 = now();
    for (int s = 0; s < steps; s++) { fused(h, W, c, x, Wi, g, (s % 8) * 4); h[s % K] += c[s % 64] * 1e-9f; }
    double t3 = now();
    printf("per step: product %.2f us, product + projection %.2f us, fused %.2f us\n",
           (t1 - t0) / steps * 1e6, (t2 - t1) / steps * 1e6, (t3 - t2) / steps * 1e6);
  }
  return (int) g[3] + (int) c[5];
}
