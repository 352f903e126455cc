"""The physical limits that bound the comparison table, measured on this machine.

    python bench/limits.py

1. Compute: the float32 product rate of one core, for the shapes of a
   recurrence step (m = rows of the batch, n = gate rows, k = hidden size),
   with fastrnn's packed panels and with scipy's BLAS (which packs W on every
   call). The input projection and large batches are bound by this rate.
2. Bandwidth: at batch 1 a step is a matrix-vector product, bound by how fast
   a core streams its share of W_hh from its cache: bytes / seconds of the
   one-row product.
3. Synchronisation: the unit-split kernels meet once per step; the time of
   one barrier of two threads, fastrnn's spin barrier beside OpenMP's.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastrnn import _kernels, _threads  # noqa: E402


def main():
    k = _kernels.recurrent
    print(f"kernels: {_kernels.variant}; one thread; float32")
    with _threads.serial_blas():
        for m, n, kk in [(32, 1024, 256), (8, 2048, 512), (512, 1024, 256)]:
            reps = max(3, int(2e9 / (2 * m * n * kk)))
            for panels in (True, False):
                sec = k.product_seconds(m, n, kk, reps, panels)
                print(f"product m={m:<4} n={n:<5} k={kk:<4} {'panels' if panels else 'BLAS  '}: "
                      f"{2 * m * n * kk / sec / 1e9:6.1f} GFLOPS")
        for n, kk, what in [(512, 256, "LSTM H=256, one core's half of W_hh"),
                            (1024, 256, "LSTM H=256, all of W_hh"),
                            (256, 64, "LSTM H=64, all of W_hh")]:
            sec = k.product_seconds(1, n, kk, 20000, True)
            print(f"one-row product n={n:<5} k={kk:<4} ({what}): {sec * 1e6:6.2f} us, "
                  f"{n * kk * 4 / sec / 1e9:6.1f} GB/s")
    spin = k.barrier_seconds(2, 200000, True)
    omp = k.barrier_seconds(2, 200000, False)
    print(f"barrier, 2 threads: spin {spin * 1e6:.3f} us, OpenMP {omp * 1e6:.3f} us, "
          f"ratio {spin / omp:.2f}")


if __name__ == "__main__":
    main()
