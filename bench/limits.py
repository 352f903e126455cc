"""The physical limits that bound the comparison table, measured on this machine.

    python -m bench.limits

1. Compute: the float32 product rate of one core, for the shapes of a
   recurrence step (m = rows of the batch, n = gate rows, k = hidden size),
   with each variant of fastrnn's packed panels this CPU runs (AVX-512,
   AVX2) and with scipy's BLAS (which packs W on every call). The input
   projection and large batches are bound by this rate.
2. Bandwidth: at batch 1 a step is a matrix-vector product, bound by how fast
   a core streams its share of W_hh from its cache: bytes / seconds of the
   one-row product.
3. Synchronisation: the unit-split kernels meet once per step; the time of
   one barrier of two threads, fastrnn's spin barrier beside OpenMP's.
"""
import numpy as np

from fastrnn import _kernels, _threads


def transposed_product_seconds(m, n, k, reps):
    """Seconds per float32 C (m x n) += Aᵀ B over k rows with the selected kernel."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    return _kernels.recurrent.panel_product_tn(a, b, np.zeros((m, n), np.float32), reps)


def product_seconds(m, n, k, reps):
    """Seconds per float32 product (m x k) @ (n x k)ᵀ with the selected kernel."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    return _kernels.recurrent.panel_product(a, w, np.zeros((m, n), np.float32), False, reps)


def main():
    k = _kernels.recurrent
    best = k.panel_kernel()
    print(f"kernels: {_kernels.variant}; panel product: {best}; one thread; float32")
    try:
        with _threads.serial_blas():
            for m, n, kk in [(32, 1024, 256), (8, 2048, 512), (512, 1024, 256)]:
                reps = max(3, int(2e9 / (2 * m * n * kk)))
                for variant in k.panel_kernels():
                    k.set_panel_kernel(variant)
                    sec = product_seconds(m, n, kk, reps)
                    print(f"product m={m:<4} n={n:<5} k={kk:<4} {variant:<6}: "
                          f"{2 * m * n * kk / sec / 1e9:6.1f} GFLOPS")
            # the weight gradients dW = dGᵀ X of the training benchmarks (one task's rows)
            for m, n, kk, what in [(256, 128, 1600, "train-bilstm-h128-b32"),
                                   (512, 256, 6400, "train-lstm-h256-b64"),
                                   (512, 256, 100, "train-lstm-h256-b1")]:
                reps = max(3, int(2e9 / (2 * m * n * kk)))
                rates = {}
                for variant in k.panel_kernels():
                    k.set_panel_kernel(variant)
                    rates[variant] = 2 * m * n * kk / transposed_product_seconds(m, n, kk, reps)
                print(f"dW = dGᵀX m={m:<4} n={n:<4} over {kk:<5} rows ({what}): " + ", ".join(
                    f"{v} {r / 1e9:6.1f}" for v, r in rates.items()) + " GFLOPS; "
                    f"{best} / blas time ratio {rates['blas'] / rates[best]:.2f}")
            k.set_panel_kernel(best)
            for n, kk, what in [(512, 256, "LSTM H=256, one core's half of W_hh"),
                                (1024, 256, "LSTM H=256, all of W_hh"),
                                (256, 64, "LSTM H=64, all of W_hh")]:
                sec = product_seconds(1, n, kk, 20000)
                print(f"one-row product n={n:<5} k={kk:<4} ({what}, {best}): "
                      f"{sec * 1e6:6.2f} us, {n * kk * 4 / sec / 1e9:6.1f} GB/s")
    finally:
        k.set_panel_kernel(best)
    spin = k.barrier_seconds(2, 200000, True)
    omp = k.barrier_seconds(2, 200000, False)
    print(f"barrier, 2 threads: spin {spin * 1e6:.3f} us, OpenMP {omp * 1e6:.3f} us, "
          f"ratio {spin / omp:.2f}")


if __name__ == "__main__":
    main()
