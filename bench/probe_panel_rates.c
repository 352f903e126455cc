/* A probe, not part of fastrnn: the AVX2 panel product's rate at the given
   shapes, each followed by the core's FMA rate measured right after it, in
   one process; run it several times. On the fourteenth session's Zen 3
   (docs/performance.md) the products ran in one of three modes that mostly
   held for a whole process and changed between processes (m=32 n=1024 k=256:
   ~85, ~63 or ~39 GFLOPS) while the FMA rate between them stayed at 92-97:
   the products' loads, not the FMA pipes or the clock, are what the host's
   other tenants slow.

       gcc -O3 -fno-trapping-math -pthread -I fastrnn/_kernels \
           bench/probe_panel_rates.c -o /tmp/probe_rates
       for i in 1 2 3 4 5 6; do taskset -c 1 /tmp/probe_rates 32x1024x256 16x1024x512; done

   Prints "peak P" (the best of three FMA-rate runs first), then per shape
   mxnxk its GFLOPS (best of five timings) and, in brackets, the FMA rate
   measured after it. L2=bytes in the environment sets the blocking's L2
   (default 512 KiB, Zen 3's). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef long Py_ssize_t;
#include "_panel.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* GFLOPS of fastrnn_fma_peak_avx2's FR_ACC (12) chains of 8-lane FMAs */
static double fma_rate(void) {
    const long iters = 20000000;
    double t = now();
    volatile float sink = fastrnn_fma_peak_avx2(iters);
    (void) sink;
    return iters * 12.0 * 8 * 2 / (now() - t) / 1e9;
}

int main(int argc, char **argv) {
    fastrnn_panel_set_caches(32 << 10, getenv("L2") ? atol(getenv("L2")) : 512 << 10);
    double peak = 0;
    for (int r = 0; r < 3; r++) {
        double g = fma_rate();
        if (g > peak) peak = g;
    }
    printf("peak %.1f", peak);
    for (int s = 1; s < argc; s++) {
        long m, n, k;
        if (sscanf(argv[s], "%ldx%ldx%ld", &m, &n, &k) != 3 || m < 1 || n < 1 || k < 1) {
            fprintf(stderr, "shapes are MxNxK, got %s\n", argv[s]);
            return 2;
        }
        float *a = aligned_alloc(64, (4 * m * k + 63) / 64 * 64);
        float *w = aligned_alloc(64, (4 * n * k + 63) / 64 * 64);
        float *c = aligned_alloc(64, (4 * m * n + 63) / 64 * 64);
        float *wp = aligned_alloc(64, 4 * ((n + 15) / 16) * 16 * k);
        for (long i = 0; i < m * k; i++) a[i] = (float) (i % 7) * 0.1f;
        for (long i = 0; i < n * k; i++) w[i] = (float) (i % 5) * 0.1f;
        fastrnn_pack_panels(w, n, k, k, 1, wp);
        long reps = (long) (4e8 / (2.0 * m * n * k));
        if (reps < 4) reps = 4;
        double best = 1e9;
        for (int r = 0; r < 5; r++) {
            double t = now();
            for (long i = 0; i < reps; i++) fastrnn_panel_gemm_avx2(m, n, k, a, k, wp, c, n, 0);
            t = (now() - t) / reps;
            if (t < best) best = t;
        }
        printf(" %.1f[%.0f]", 2.0 * m * n * k / best / 1e9, fma_rate());
        free(a);
        free(w);
        free(c);
        free(wp);
    }
    printf("\n");
    return 0;
}
