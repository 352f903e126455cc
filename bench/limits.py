"""The physical limits that bound the comparison table, measured on this machine.

    python -m bench.limits [--rounds N]

1. Peak: the float32 FMA rate of one core with each panel variant's
   instruction set (12 independent chains of vector FMAs), and the best rate
   scipy's BLAS reaches on large square products (its sgemm at its best):
   the two yardsticks the products are held to.
2. Compute: the float32 product rate of one core at the shapes of a
   recurrence step (m = rows of one thread's batch, n = gate rows, k = hidden
   size) and of the input projection (m = a chunk of steps x rows), with
   each variant of fastrnn's packed panels this CPU runs and with scipy's
   BLAS (which packs W on every call): GFLOPS, the fraction of the peak, and
   the time ratio to BLAS. Then the batch-1 input projections of one chunk
   of steps with W_ih's packing counted: its panels all packed first (a
   call of several chunks), or each group packed into L2 as the product
   reaches it (a call of one chunk). And the packing of a thread's share of
   W_hh into panels, with W at a cache line or 16 bytes past one.
3. Bandwidth: at batch 1 a step is a matrix-vector product, bound by how fast
   a core streams its share of W_hh from its cache: bytes / seconds of the
   one-row product, on packed panels, on the weights as stored (the row dot
   products of a cell's split step and of the unit split's one row) and
   BLAS's gemv.
4. Synchronisation: the unit-split kernels meet once per step; the time of
   one barrier of two threads, fastrnn's spin barrier beside OpenMP's.
5. The batch-1 calls of the comparison table: their input projection at the
   peak plus their steps at the one-row rate (serial_bound), the bound of a
   call that runs the one before the other.

The machine is shared and its speed moves between seconds, so every figure is
a median over interleaved rounds (each round times every variant of a shape
back to back, the peak included), and each ratio is the median of the
rounds' ratios.
"""
import functools
import statistics

import numpy as np

from fastrnn import _cpu, _kernels, _threads
from fastrnn._kernels import _panels
from fastrnn._kernels._cells import CellKind

from bench.engines import CONFIGS, GATES, SMOKE, THREADS

# (m, n, k, what): the products of the benchmark configurations (per thread)
STEP_SHAPES = [
    (32, 1024, 256, "LSTM H=256 B=64: a step, one thread's 32 rows"),
    (8, 1024, 256, "LSTM H=256 B=16: a step, one thread's 8 rows"),
    (16, 1024, 512, "LSTM H=512 B=16: a step, one thread's units (unit split)"),
    (32, 2048, 512, "LSTM H=512 B=64: a step, one thread's 32 rows"),
    (16, 2048, 1024, "LSTM H=1024 B=16: a step, one thread's units (8 MiB)"),
    # panel counts that fill no whole tile of a variant (AVX-512 takes 8
    # panels a row, AVX2 6): a row's tiles as even as possible
    (1, 128, 64, "LSTM H=64 B=1: a step, one thread's units (8 panels)"),
    (1, 96, 64, "GRU H=64 B=1: a step, one thread's units (6 panels)"),
    (2, 1024, 256, "two rows"),
]
LARGE_SHAPES = [
    (256, 1024, 256, "LSTM H=256: input projection, 8 steps x 32 rows"),
    (512, 1024, 256, "512 rows"),
    (1024, 1024, 1024, "square"),
]
ROW_SHAPES = [
    (512, 256, "LSTM H=256, one core's half of W_hh"),
    (1024, 256, "LSTM H=256, all of W_hh"),
    (256, 64, "LSTM H=64, all of W_hh"),
    (1536, 1024, "GRU H=1024, one core's half of W_hh (6 MiB)"),
]
# (m, gates, H, k, units, label): an input projection over one chunk of every step at
# batch 1, W_ih's rows of one thread's units of every gate (or all of them), packing
# included: all panels packed first, or each group packed as the product reaches it
PROJECTION_SHAPES = [
    (50, 3, 1024, 1024, 512, "gru-h1024-b1: one thread's units (6 MiB of W_ih)"),
    (100, 4, 256, 256, 128, "lstm-h256-b1: one thread's units"),
    (100, 3, 128, 128, 128, "bigru-h128-b1: one direction's W_ih"),
]
# (rows, k, label): a thread's share of W_hh that a batch-1 call packs into panels
PACK_SHAPES = [
    (512, 256, "lstm-h256-b1: one thread's share of W_hh (512 KiB)"),
    (1536, 1024, "gru-h1024-b1: one thread's share of W_hh (6 MiB)"),
]
# (cell kind, rows, units, label): a unit-split thread's step at batch 1, a batch-split one's
GATE_SHAPES = [(CellKind.LSTM, 1, 128, "LSTM 1 x 128 units"),
               (CellKind.LSTM, 32, 256, "LSTM 32 x 256 units"),
               (CellKind.GRU_RESET_AFTER, 32, 256, "GRU 32 x 256 units"),
               (CellKind.RNN_TANH, 32, 256, "RNN tanh 32 x 256 units")]
TN_SHAPES = [(256, 128, 1600, "train-bilstm-h128-b32"), (512, 256, 6400, "train-lstm-h256-b64"),
             (512, 256, 100, "train-lstm-h256-b1")]
SGEMM_SIZES = (1024, 2048)
if SMOKE:               # CI runs every line once, at small sizes
    STEP_SHAPES, LARGE_SHAPES = STEP_SHAPES[-1:], [(64, 256, 64, "small")]
    ROW_SHAPES, TN_SHAPES, SGEMM_SIZES = ROW_SHAPES[-2:-1], [(16, 32, 50, "small")], (128,)
    PROJECTION_SHAPES = [(9, 3, 40, 70, 20, "small")]
    PACK_SHAPES = [(40, 70, "small")]


def config_flops(cfg):
    """The multiply-add FLOPs of one call of a benchmark configuration
    (bench.engines.Config): every direction's input projection and recurrent
    product, 2 T B D G H (I + H); training adds backward's four products of
    the same sizes (dW_ih, dW_hh, dX, dH): three times that."""
    flops = _product_flops(cfg, cfg.I + cfg.H)
    return 3 * flops if cfg.task == "train" else flops


def _product_flops(cfg, k):
    """2 T B D G k: every direction's products of its gate rows with k
    columns, over every step and row."""
    D = 2 if cfg.bidirectional else 1
    return 2 * cfg.steps * cfg.B * D * GATES[cfg.kind] * cfg.H * k


def compute_floor(cfg, peak, threads):
    """Seconds one call needs at least with ``threads`` cores at ``peak`` FLOP/s each."""
    return config_flops(cfg) / (threads * peak)


def streamed_bytes(cfg):
    """Bytes of recurrent weights one call must read, step after step, from
    cache: W_hh of every direction per step (forward; training reads it again
    in backward); a cell step (or a layer's one step) reads W_ih and W_hh once. At batch 1 a step is
    a matrix-vector product, and these bytes over the cores' cache bandwidth
    bound the call as the FLOPs over the FMA peak bound it at large batches."""
    D = 2 if cfg.bidirectional else 1
    G = GATES[cfg.kind] * cfg.H
    if cfg.task in ("cell", "step"):
        return 4 * G * (cfg.I + cfg.H)
    per_step = 4 * D * G * cfg.H
    return cfg.steps * per_step * (2 if cfg.task == "train" else 1)


def stream_rate(cfg, threads, rounds=7):
    """The best rate (bytes/s) at which one core read its share of cfg's
    recurrent weights (1 / threads of one step's) in a one-row product: the
    best of rounds of every panel variant, on panels and as stored, and
    BLAS's sgemv, a matrix of that size (so it comes from the cache level it
    would live in)."""
    one_step = cfg.task in ("cell", "step")
    cols = cfg.I + cfg.H if one_step else cfg.H
    D = 1 if one_step or not cfg.bidirectional else 2
    return _one_row_rate(max(16, D * GATES[cfg.kind] * cfg.H // threads), cols, rounds)


@functools.lru_cache(maxsize=None)
def _one_row_rate(rows, cols, rounds):
    """stream_rate of a (rows x cols) float32 matrix, measured once per shape
    (configurations that differ only in batch or task share it)."""
    k_mod = _kernels.recurrent
    a, w, c = _operands(1, rows, cols)
    reps = 2 if SMOKE else max(4, int(2e8 / w.nbytes))
    before = k_mod.panel_kernel()
    best = 0.0
    try:
        with _threads.serial_blas():
            for v in k_mod.panel_kernels():
                k_mod.set_panel_kernel(v)
                for seconds in (product_seconds, row_dot_seconds):
                    best = max([best] + [w.nbytes / seconds((a, w, c), reps)
                                         for _ in range(1 if SMOKE else rounds)])
    finally:
        k_mod.set_panel_kernel(before)
    return best


def projection_flops(cfg):
    """The multiply-add FLOPs of one inference call's input projections
    (every direction's X W_ihᵀ over every step): 2 T B D G I."""
    return _product_flops(cfg, cfg.I)


def serial_bound(cfg, peak, threads):
    """(projection seconds, steps seconds) of a batch-1 inference call whose
    input projection runs first, at ``peak`` FLOP/s per core, and whose steps
    then stream W_hh at the one-row rate (stream_rate) on ``threads`` cores:
    the two cannot share a core's time (both use its load ports; a probe of
    them fused in one loop saved ~0.5 us of a 7 us step), so their sum bounds
    the call where the table's floor takes their larger. Gate passes, the
    threads' meetings and the call's fixed cost come on top."""
    return (projection_flops(cfg) / (threads * peak),
            streamed_bytes(cfg) / (threads * stream_rate(cfg, threads)))


def floors(cfg, peak, threads):
    """(seconds, what binds) of one call's lower bound on ``threads`` cores:
    the larger of the compute floor (FLOPs at ``peak`` FLOP/s per core) and
    the bandwidth floor (streamed_bytes at stream_rate per core)."""
    compute = compute_floor(cfg, peak, threads)
    stream = streamed_bytes(cfg) / (threads * stream_rate(cfg, threads))
    return (stream, "bandwidth") if stream > compute else (compute, "FLOPs")


def measured_peak(rounds=7):
    """This core's float32 FMA rate with the best panel variant: the best of
    rounds (a peak is what the core can do; a shared machine's slow moments
    would make a median, and every floor from it, too low); None without a
    variant."""
    simd = [v for v in _kernels.recurrent.panel_kernels() if v != "blas"]
    if not simd:
        return None
    return max(_panels.fma_rate(simd[0], 10000 if SMOKE else 20000000)
               for _ in range(rounds))


def _operands(m, n, k):
    rng = np.random.default_rng(m * n + k)
    return (rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((n, k)).astype(np.float32), np.zeros((m, n), np.float32))


def product_seconds(ops, reps):
    """Seconds per float32 product (m x k) @ (n x k)ᵀ with the selected kernel."""
    a, w, c = ops
    return _kernels.recurrent.panel_product(a, w, c, False, reps)


def row_dot_seconds(ops, reps):
    """Seconds per float32 y = W a on W as stored (row dot products; BLAS's
    gemv with the "blas" variant)."""
    a, w, c = ops
    return _kernels.recurrent.row_dot_product(w, a[0], c[0], False, reps)


def transposed_product_seconds(ops, reps):
    """Seconds per float32 C (m x n) += Aᵀ B over k rows with the selected kernel."""
    a, b, c = ops
    return _kernels.recurrent.panel_product_tn(a, b, c, reps)


def _pair_lines(k, best, rounds, make):
    """dW_ih and dW_hh on the rows where both read the same dG (m rows of
    dG, n columns of X and of H_prev each) as two products apart and as one
    call's pair (dG copied into the register tiles' strips once;
    layer_grads' way), in interleaved rounds."""
    print(f"-- dW_ih and dW_hh on one dG ({best}): us as two products | as one pair, "
          f"pair / two")
    for m, n, kk, what in TN_SHAPES:
        a, b, c = make(m, n, kk)
        b2, c2 = b[:, ::-1].copy(), c.copy()
        reps = _reps(4 * m * n * kk)
        two, pair = [], []
        for _ in range(rounds):
            two.append(transposed_product_seconds((a, b, c), reps)
                       + transposed_product_seconds((a, b2, c2), reps))
            pair.append(k.panel_product_tn(a, b, c, reps, None, (b2, c2, None)))
        print(f"m={m:<5}n={n:<5}k={kk:<5}two {statistics.median(two) * 1e6:8.1f} | pair "
              f"{statistics.median(pair) * 1e6:8.1f}  x{_median_ratio(pair, two):.2f}  [{what}]")


def _reps(flops, budget=4e8):
    return 1 if SMOKE else max(2, int(budget / flops))


def _rates(variants, shapes, rounds, timer, make, peak_variant):
    """{shape: {variant: [FLOP/s per round]}}, each round timing every
    variant of every shape back to back, with the FMA peak of peak_variant
    ("peak") in the same round."""
    k = _kernels.recurrent
    ops = {s: make(*s[:3]) for s in shapes}
    out = {s: {v: [] for v in variants + ["peak"]} for s in shapes}
    for _ in range(rounds):
        for s in shapes:
            m, n, kk = s[:3]
            flops = 2 * m * n * kk
            if peak_variant:
                out[s]["peak"].append(_panels.fma_rate(peak_variant, 10000 if SMOKE else 1000000))
            for v in variants:
                k.set_panel_kernel(v)
                out[s][v].append(flops / timer(ops[s], _reps(flops)))
    return out


def _projection_lines(k, rounds):
    """The input projections of PROJECTION_SHAPES with the selected variant:
    W's panels packed first, then the product, against each group packed as
    the product reaches it (what a call of one chunk of steps does), in
    interleaved rounds."""
    print(f"-- input projections ({k.panel_kernel()}), packing of W included: GFLOPS with "
          f"W packed first | each group packed as the product reaches it, time / first's")
    for m, gates, hidden, kk, units, what in PROJECTION_SHAPES:
        rng = np.random.default_rng(m + kk)
        a = rng.standard_normal((m, kk)).astype(np.float32)
        w = rng.standard_normal((gates, hidden, kk)).astype(np.float32)
        c = np.zeros((m, gates * units), np.float32)
        flops = 2 * m * gates * units * kk
        reps = _reps(flops, 1e8)
        first, going = [], []
        for _ in range(rounds):
            first.append(k.panel_product_rows(a, w, 0, units, c, False, reps, whole=True))
            going.append(k.panel_product_rows(a, w, 0, units, c, False, reps))
        rate = {name: flops / statistics.median(t) / 1e9
                for name, t in (("first", first), ("going", going))}
        print(f"m={m:<5}n={gates * units:<5}k={kk:<5}first {rate['first']:5.1f} | as it goes "
              f"{rate['going']:5.1f} x{_median_ratio(going, first):.2f}  [{what}]")


def _packing_lines(rounds):
    """Packing a share of W_hh into panels (what every batch-1 call does
    first) with W at a cache line and 16 bytes past one (numpy's alignment:
    why the layers keep their weights at lines), its lines in cache or
    evicted, in interleaved rounds."""
    print("-- packing W into panels (one thread): us with W in cache | its lines evicted, "
          "W at a cache line / 16 bytes past one")
    for rows, kk, what in PACK_SHAPES:
        rng = np.random.default_rng(rows + kk)
        # (the same bytes, the start moved by 16: only the placement differs)
        raw = _panels.aligned_empty(rows * kk + 16, np.float32)
        placed = {0: raw[:rows * kk].reshape(rows, kk),
                  16: raw[4:4 + rows * kk].reshape(rows, kk)}
        for w in placed.values():
            w[...] = rng.standard_normal((rows, kk))
        reps = 1 if SMOKE else max(2, int(3e7 / (rows * kk)))
        us = {(at, cold): [] for at in placed for cold in (False, True)}
        for _ in range(rounds):
            for (at, cold), t in us.items():
                t.append(_panels.pack_seconds(placed[at], reps, cold) * 1e6)
        med = {key: statistics.median(t) for key, t in us.items()}
        print(f"n={rows:<5}k={kk:<5}" + " | ".join(
            f"{'evicted' if cold else 'cached'} {med[0, cold]:7.1f} / {med[16, cold]:7.1f} "
            f"(x{_median_ratio(us[16, cold], us[0, cold]):.2f})" for cold in (False, True))
            + f"  [{what}]")


def _median_ratio(xs, ys):
    return statistics.median(x / y for x, y in zip(xs, ys))


def main(argv=None):
    from fastrnn.cli import OneLineParser
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    k = _kernels.recurrent
    best = k.panel_kernel()
    variants = k.panel_kernels()
    simd = [v for v in variants if v != "blas"]
    top = simd[0] if simd else None
    plan = _cpu.plan()
    print(f"cpu: {plan.model}; kernels: {_kernels.variant}; panel product: {best}; "
          f"one thread; float32; medians of {args.rounds} interleaved rounds")
    for line in plan.describe(best)[3:]:
        print(line)
    med = statistics.median
    try:
        with _threads.serial_blas():
            iters = 10000 if SMOKE else 20000000
            peaks = {v: max(_panels.fma_rate(v, iters) for _ in range(args.rounds))
                     for v in simd}
            for v, r in peaks.items():
                print(f"peak {v:<6}: {r / 1e9:6.1f} GFLOPS (independent vector FMAs, best of "
                      f"{args.rounds})")
            k.set_panel_kernel("blas")
            sgemm = 0.0
            for size in SGEMM_SIZES:
                ops = _operands(size, size, size)
                rate = max(2 * size ** 3 / product_seconds(ops, 2) for _ in range(args.rounds))
                print(f"BLAS sgemm {size}^3: {rate / 1e9:6.1f} GFLOPS (best of {args.rounds})")
                sgemm = max(sgemm, rate)
            for title, shapes in (("step products", STEP_SHAPES),
                                  ("large products", LARGE_SHAPES)):
                print(f"-- {title}: GFLOPS (fraction of {top or 'no'} peak; of BLAS's best "
                      f"sgemm), time / BLAS time")
                rates = _rates(variants, shapes, args.rounds, product_seconds, _operands, top)
                for s, r in rates.items():
                    m, n, kk, what = s
                    cells = []
                    for v in variants:
                        text = f"{v} {med(r[v]) / 1e9:5.1f}"
                        if v != "blas":
                            frac = _median_ratio(r[v], r["peak"]) if top else 0
                            text += (f" ({frac:.2f}; {med(r[v]) / sgemm:.2f}) "
                                     f"x{_median_ratio(r['blas'], r[v]):.2f}")
                        cells.append(text)
                    print(f"m={m:<5}n={n:<5}k={kk:<5}" + " | ".join(cells) + f"  [{what}]")
            print("-- dW = dGᵀX over k rows: GFLOPS, time / BLAS time")

            def tn_operands(m, n, kk):
                rng = np.random.default_rng(m + n + kk)
                return (rng.standard_normal((kk, m)).astype(np.float32),
                        rng.standard_normal((kk, n)).astype(np.float32),
                        np.zeros((m, n), np.float32))
            rates = _rates(variants, TN_SHAPES, args.rounds, transposed_product_seconds,
                           tn_operands, None)
            for s, r in rates.items():
                m, n, kk, what = s
                print(f"m={m:<5}n={n:<5}k={kk:<5}" + " | ".join(
                    f"{v} {med(r[v]) / 1e9:5.1f}" + (
                        f" x{_median_ratio(r['blas'], r[v]):.2f}" if v != "blas" else "")
                    for v in variants) + f"  [{what}]")
            k.set_panel_kernel(best)
            if best != "blas":
                _pair_lines(k, best, args.rounds, tn_operands)
            print(f"-- one-row products ({best}): the weights streamed from cache, GB/s on "
                  f"panels | as stored (row dot products) | BLAS's gemv"
                  + (" | the same bytes read alone (vector loads and adds, the ceiling)"
                     if best != "blas" else ""))
            for n, kk, what in ROW_SHAPES:
                ops = _operands(1, n, kk)
                reps = _reps(2 * n * kk, 2e8)
                secs = {name: [] for name in ("panels", "stored", "blas")
                        + (("read",) if best != "blas" else ())}
                with _threads.serial_blas():      # one core each (gemv may thread)
                    for _ in range(args.rounds):  # interleaved rounds
                        k.set_panel_kernel(best)
                        secs["panels"].append(product_seconds(ops, reps))
                        secs["stored"].append(row_dot_seconds(ops, reps))
                        if best != "blas":
                            secs["read"].append(n * kk * 4 / _panels.read_rate(
                                best, n * kk * 4, reps))
                        k.set_panel_kernel("blas")
                        secs["blas"].append(row_dot_seconds(ops, reps))
                k.set_panel_kernel(best)
                print(f"n={n:<5}k={kk:<5}" + " | ".join(
                    f"{name} {n * kk * 4 / med(t) / 1e9:6.1f}" for name, t in secs.items())
                    + f"  [{what}]")
            if best != "blas":
                _projection_lines(k, args.rounds)
                _packing_lines(args.rounds)
    finally:
        k.set_panel_kernel(best)
    print("-- gate passes (the elementwise pass after each step's product): ns per unit, "
          "each kernel build")
    builds = _kernels.builds()
    for kind, rows, hidden, what in GATE_SHAPES:
        ns = {name: [] for name, _ in builds}
        reps = 3 if SMOKE else max(3, int(2e7 / (rows * hidden)))
        for _ in range(args.rounds):                  # interleaved rounds
            for name, module in builds:
                ns[name].append(module.gate_pass_seconds(kind, rows, hidden, reps)
                                / (rows * hidden) * 1e9)
        print(f"{what:<24}" + " | ".join(f"{name} {med(t):5.2f}" for name, t in ns.items()))
    if top is not None:
        print(f"-- batch-1 calls of the comparison table on {THREADS} threads: the input "
              f"projection at the {top} peak, then the steps at the one-row rate; "
              f"their sum bounds the call, the table's floor is their larger")
        for cfg in CONFIGS:
            if cfg.task == "infer" and cfg.B == 1:
                proj, steps = serial_bound(cfg, peaks[top], THREADS)
                print(f"{cfg.name:<16} projection {proj * 1e6:8.1f} us + steps "
                      f"{steps * 1e6:8.1f} us = {(proj + steps) * 1e6:8.1f} us")
    rounds = 100 if SMOKE else 200000
    spin = k.barrier_seconds(2, rounds, True)
    omp = k.barrier_seconds(2, rounds, False)
    print(f"barrier, 2 threads: spin {spin * 1e6:.3f} us, OpenMP {omp * 1e6:.3f} us, "
          f"ratio {spin / omp:.2f}")


if __name__ == "__main__":
    main()
