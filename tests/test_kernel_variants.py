"""Every kernel build this CPU runs (baseline, x86-64-v3, x86-64-v4) and
float32 product path (the packed panels of each instruction set this CPU
runs, BLAS) against the numpy reference and finite differences."""
import contextlib

import numpy as np
import pytest

import fastrnn
from fastrnn import _engine, _kernels
from fastrnn._kernels import _recurrent as baseline
from conftest import CELL_FORMS, CELL_IDS
from gradcheck import check_module_gradients
from isolated import run_isolated
from test_layers_reference import _check_layer

VARIANTS = _kernels.builds()


@pytest.fixture(params=[(name, panels) for name, module in VARIANTS
                        for panels in module.panel_kernels()],
                ids=lambda p: f"{p[0]}-{p[1]}")
def kernels(request, monkeypatch):
    name, panels = request.param
    module = dict(VARIANTS)[name]
    before = module.panel_kernel()
    module.set_panel_kernel(panels)
    monkeypatch.setattr(_engine, "_k", module)
    yield module
    module.set_panel_kernel(before)


def test_selected_variant_is_reported():
    assert _kernels.variant in ("baseline", "avx2", "avx512")
    # the best one built for this CPU, unless FASTRNN_KERNELS names one
    choice = __import__("os").environ.get("FASTRNN_KERNELS", "auto").strip().lower()
    assert _kernels.variant == (VARIANTS[0][0] if choice == "auto" else choice)
    assert fastrnn.show_config()["kernels"] == _kernels.variant
    # likewise the panel variant, unless FASTRNN_PANEL names one
    panel = __import__("os").environ.get("FASTRNN_PANEL", "").strip().lower()
    assert fastrnn.show_config()["panel_product"] == (
        panel or _kernels.recurrent.panel_kernels()[0])


@pytest.mark.parametrize("choice", ["baseline", "avx2", "avx512", "sse9"])
def test_kernel_build_from_the_environment(choice):
    """FASTRNN_KERNELS picks the kernel build when fastrnn loads; one this CPU
    cannot run, or an unknown name, is refused naming the choices."""
    import subprocess
    import sys
    code = "import fastrnn; print(fastrnn.show_config(file=open('/dev/null', 'w'))['kernels'])"
    env = dict(__import__("os").environ, FASTRNN_KERNELS=choice)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    if choice in dict(VARIANTS):
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == choice
    else:
        assert run.returncode != 0
        assert "FASTRNN_KERNELS" in run.stderr


@pytest.mark.parametrize("name,module", VARIANTS)
def test_panel_variants(name, module):
    """Each module offers the panel variants of this CPU, best first, and
    refuses the others without changing its choice."""
    names = module.panel_kernels()
    assert names[-1] == "blas" and set(names) <= {"avx512", "avx2", "blas"}
    if baseline.cpu_has_avx2_fma():
        assert "avx2" in names
    before = module.panel_kernel()
    with pytest.raises(ValueError, match="panel kernel must be one of"):
        module.set_panel_kernel("sse9")
    assert module.panel_kernel() == before
    f32 = np.float32
    with pytest.raises(ValueError, match="non-empty"):
        module.panel_product(np.zeros((0, 3), f32), np.zeros((2, 3), f32),
                             np.zeros((0, 2), f32), False)
    for w, a, y in [(np.zeros((2, 3), f32), np.zeros(4, f32), np.zeros(2, f32)),
                    (np.zeros((2, 3), f32), np.zeros(3, f32), np.zeros(5, f32)),
                    (np.zeros((0, 3), f32), np.zeros(3, f32), np.zeros(0, f32))]:
        with pytest.raises(ValueError, match="row_dot_product: W \\(m, k\\)"):
            module.row_dot_product(w, a, y, False)
    with pytest.raises(ValueError, match="reps >= 1"):
        module.row_dot_product(np.zeros((2, 3), f32), np.zeros(3, f32), np.zeros(2, f32),
                               False, 0)
    from fastrnn._kernels import _panels
    with pytest.raises(ValueError, match="variant must be one of"):
        _panels.fma_rate("blas")
    if "avx2" in names:
        with pytest.raises(ValueError, match="iters must be >= 1"):
            _panels.fma_rate("avx2", 0)
    with pytest.raises(ValueError, match="variant must be one of"):
        _panels.read_rate("blas", 4096, 1)
    for variant in (v for v in ("avx512", "avx2") if v in names):
        for nbytes, reps in ((100, 1), (4096, 0)):
            with pytest.raises(ValueError, match="nbytes must be >= 512 and reps >= 1"):
                _panels.read_rate(variant, nbytes, reps)
        # an L1-sized array read many times: bytes over seconds (no speed asserted)
        rate = _panels.read_rate(variant, 16 << 10, 200)
        assert isinstance(rate, float) and np.isfinite(rate) and rate > 0
    with pytest.raises(ValueError, match="C \\(m, n\\)"):
        module.panel_product_tn(np.zeros((3, 2), f32), np.zeros((3, 4), f32),
                                np.zeros((4, 2), f32))
    for b2, c2, s2 in [((4, 5), (2, 5), None), ((3, 5), (3, 5), None), ((3, 5), (2, 4), None),
                       ((3, 0), (2, 0), None), ((3, 5), (2, 5), 3)]:
        with pytest.raises(ValueError, match="second = \\(B2 \\(k, n2\\)"):
            module.panel_product_tn(np.zeros((3, 2), f32), np.zeros((3, 4), f32),
                                    np.zeros((2, 4), f32), 1, None,
                                    (np.zeros(b2, f32), np.zeros(c2, f32),
                                     None if s2 is None else np.zeros(s2, f32)))
    # (a column sum written past its end would corrupt memory: in a child)
    run_isolated(f"""
        import pytest
        from fastrnn import _kernels
        module = dict(_kernels.builds())[{name!r}]
        f32 = np.float32
        for size in (1, 3):
            with pytest.raises(ValueError, match=f"colsum must have A's 2 columns, got {{size}}"):
                module.panel_product_tn(np.zeros((3, 2), f32), np.zeros((3, 4), f32),
                                        np.zeros((2, 4), f32), 1, np.zeros(size, f32))
    """)


@pytest.mark.parametrize("choice", ["avx2", "blas", "sse9"])
def test_panel_variant_from_the_environment(choice):
    """FASTRNN_PANEL picks the variant when the kernels load; one this CPU
    cannot run is refused with the choices it can."""
    import subprocess
    import sys
    code = "import fastrnn; print(fastrnn.show_config(file=open('/dev/null', 'w'))" \
           "['panel_product'])"
    env = dict(__import__("os").environ, FASTRNN_PANEL=choice)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True)
    if choice in baseline.panel_kernels():
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == choice
    else:
        assert run.returncode != 0
        assert "FASTRNN_PANEL must be one of" in run.stderr


def _check_transposed_products(module, m, n, k):
    """C += Aᵀ B on each of module's panel variants against float64, with and
    without the column sums of A, which must be A's rows added one after the
    other in float32 (the order of k, the BLAS path's)."""
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    s0 = rng.standard_normal(m).astype(np.float32)
    want = c0 + a.T.astype(np.float64) @ b.astype(np.float64)
    want_sums = s0.copy()
    for row in a:
        want_sums += row
    for variant in _variants(module):
        for with_sums in (False, True):
            c, sums = c0.copy(), s0.copy()
            module.panel_product_tn(a, b, c, 1, sums if with_sums else None)
            np.testing.assert_allclose(c, want, rtol=0, atol=1e-4 * np.sqrt(k) * 4,
                                       err_msg=variant)
            np.testing.assert_array_equal(sums, want_sums if with_sums else s0,
                                          err_msg=variant)


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("m,n,k", [(1, 20, 3), (8, 32, 300), (9, 33, 600), (24, 48, 7),
                                   (13, 16, 257), (64, 100, 1), (23, 50, 513), (30, 64, 40),
                                   (37, 40, 300), (517, 40, 70)])
def test_transposed_panel_products(name, module, m, n, k):
    """C += Aᵀ B (the weight gradients) on every variant: blocks of A's
    columns in whole tiles of rows, a last block shorter or longer than a
    line (its rows in tiles as even as possible), several blocks of the
    widest (517 columns), tiles of three panels and the panels left over, k
    past one and two chunks; with the column sums of A (the bias gradients)
    taken from the same reads."""
    _check_transposed_products(module, m, n, k)


def _check_transposed_pairs(module, m, n, n2, k, same_chunks):
    """Two products C += Aᵀ B, C2 += Aᵀ B2 on one A in one call (dW_ih and
    dW_hh on one dG), on each panel variant: each against float64, each
    column sum A's rows added one after the other; with same_chunks (the
    plan's L2 holds a chunk of k of both B's panels as of each alone), the
    bits of the two products made apart."""
    rng = np.random.default_rng(m * n * n2 + k)
    a = rng.standard_normal((k, m)).astype(np.float32)
    b, b2 = (rng.standard_normal((k, w)).astype(np.float32) for w in (n, n2))
    c0, c20 = (rng.standard_normal((m, w)).astype(np.float32) for w in (n, n2))
    s0, s20 = (rng.standard_normal(m).astype(np.float32) for _ in range(2))
    wants = [c.astype(np.float64) + a.T.astype(np.float64) @ bb.astype(np.float64)
             for c, bb in ((c0, b), (c20, b2))]
    want_sums = [s0.copy(), s20.copy()]
    for row in a:
        for s in want_sums:
            s += row
    for variant in _variants(module):
        c, c2, sums, sums2 = c0.copy(), c20.copy(), s0.copy(), s20.copy()
        module.panel_product_tn(a, b, c, 1, sums, second=(b2, c2, sums2))
        for got, want in ((c, wants[0]), (c2, wants[1])):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.sqrt(k) * 4,
                                       err_msg=variant)
        np.testing.assert_array_equal(sums, want_sums[0], err_msg=variant)
        np.testing.assert_array_equal(sums2, want_sums[1], err_msg=variant)
        # without column sums: the second's stays as it was
        c2b, sums2b = c20.copy(), s20.copy()
        module.panel_product_tn(a, b, c0.copy(), 1, None, second=(b2, c2b, None))
        np.testing.assert_array_equal(sums2b, s20, err_msg=variant)
        np.testing.assert_array_equal(c2b, c2, err_msg=variant)
        alone, alone2 = c0.copy(), c20.copy()
        module.panel_product_tn(a, b, alone)
        module.panel_product_tn(a, b2, alone2)
        if same_chunks:
            np.testing.assert_array_equal(c, alone, err_msg=variant)
            np.testing.assert_array_equal(c2, alone2, err_msg=variant)


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("l2", [64 << 10, 1 << 20])
@pytest.mark.parametrize("m,n,n2,k", [(1, 20, 3, 5), (8, 32, 48, 300), (37, 40, 33, 257),
                                      (517, 16, 70, 70), (64, 100, 1, 513)])
def test_transposed_panel_product_pairs(name, module, l2, m, n, n2, k):
    """dW_ih and dW_hh as one call's two products on one A (panel_gemm_tn_pair):
    widths that end mid-panel, a one-column second, several blocks of A's
    columns, k past one and two chunks; under a 1 MiB L2 (chunks of k of at
    most 256 rows, which holds the panels of both B's of these widths) the
    bits of each product alone, under 64 KiB shorter chunks for the pair."""
    with _cache_sizes(16 << 10, l2):
        _check_transposed_pairs(module, m, n, n2, k, same_chunks=l2 == 1 << 20)


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("l2", [64 << 10, 1 << 20])
@pytest.mark.parametrize("m,n,k", [(100, 50, 300), (61, 33, 700), (48, 20, 129),
                                   (517, 40, 70)])
def test_transposed_panel_products_planned(name, module, l2, m, n, k):
    """The same under the plans of a 64 KiB and a 1 MiB L2, whatever this
    machine's. 64 KiB: the narrowest blocks (16 columns on AVX-512, 12 on
    AVX2) and chunks of k of 128-256 rows: several blocks per chunk, a last
    block with a rest (AVX-512, m=100: five blocks of 16 and one of 20), the
    next chunk's first block asked for from the last block of a chunk.
    1 MiB: blocks of 56 columns (AVX-512; 54 on AVX2), m=517 in nine and a
    rest of 13 (AVX-512), m=100 in one and a rest of 44."""
    with _cache_sizes(16 << 10, l2):
        _check_transposed_products(module, m, n, k)


def _variants(module):
    """Each of module's panel variants selected in turn (the selection put back after)."""
    before = module.panel_kernel()
    try:
        for variant in module.panel_kernels():
            module.set_panel_kernel(variant)
            yield variant
    finally:
        module.set_panel_kernel(before)


def _check_both_ways(run, c0, exact, k, variant):
    """run(c, accumulate) makes c the product P (c = P) or adds it (c += P):
    both against exact = P in float64."""
    for accumulate in (False, True):
        c = c0.copy()
        run(c, accumulate)
        np.testing.assert_allclose(c, exact + (c0 if accumulate else 0), rtol=0,
                                   atol=2e-5 * np.sqrt(k) * 4,
                                   err_msg=f"{variant} accumulate={accumulate}")


def _check_panel_products(module, m, n, k, check_variant=None):
    """C = A Wᵀ and C += A Wᵀ with every variant of module against float64
    numpy; check_variant(variant) runs first for each."""
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    exact = a.astype(np.float64) @ w.T.astype(np.float64)
    for variant in _variants(module):
        if check_variant is not None:
            check_variant(variant)
        _check_both_ways(lambda c, acc: module.panel_product(a, w, c, acc), c0, exact, k,
                         variant)


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("m,n,k", [(1, 512, 256), (2, 48, 35), (3, 40, 16), (7, 100, 37),
                                   (9, 33, 64), (8, 64, 20), (13, 200, 9), (17, 40, 1024),
                                   (5, 33, 2048)])
def test_panel_products(name, module, m, n, k):
    """Every product shape path (one tile of few rows over wide panels; tiles
    as even as possible, 13 = 7 + 6 (AVX-512) or 5 + 4 + 4 (AVX2); full and
    partial panels, an odd panel; k not a multiple of the register width; A's
    rows read in place, or packed when they lie a multiple of 4 KiB apart:
    k = 1024, 2048) of every variant against float64 numpy."""
    _check_panel_products(module, m, n, k)


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 8, 9, 17])
def test_panel_products_in_tiles_of_every_size(name, module, m):
    """A row's panels run in as few tiles as the tile's panel count allows,
    of sizes as equal as possible (fastrnn_tile_row): 1 to 17 panels (the
    last one full or partial) in every tile size each row count takes (one
    tile of rows, the few-rows shape; 9 and 17 rows: several, each over
    groups of three panels, the last group of one to three), on every
    panel variant. Each panel's columns come out to the bit as a product of
    that panel alone (one tile of one panel), and the whole product as
    float64 numpy's."""
    rng = np.random.default_rng(m)
    k = 37
    a = rng.standard_normal((m, k)).astype(np.float32)
    for panels in range(1, 18):
        for n in (16 * panels, 16 * panels - 5):
            w = rng.standard_normal((n, k)).astype(np.float32)
            exact = a.astype(np.float64) @ w.T.astype(np.float64)
            for variant in _variants(module):
                if variant == "blas":
                    continue
                c = np.zeros((m, n), np.float32)
                module.panel_product(a, w, c, False)
                np.testing.assert_allclose(c, exact, rtol=0, atol=2e-5 * np.sqrt(k) * 4,
                                           err_msg=f"{variant} n={n}")
                for p in range(0, n, 16):
                    alone = np.zeros((m, min(16, n - p)), np.float32)
                    module.panel_product(a, np.ascontiguousarray(w[p:p + 16]), alone, False)
                    np.testing.assert_array_equal(c[:, p:p + 16], alone,
                                                  err_msg=f"{variant} n={n} panel {p // 16}")


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("m,k", [(1, 1), (7, 5), (8, 8), (9, 16), (37, 53), (64, 256),
                                 (300, 100)])
def test_row_dot_products(name, module, m, k):
    """y = W a and y += W a on W as stored (a one-row step split by units)
    with every variant against float64 numpy: groups of rows and the rows
    left over, k not a multiple of the vector width; and each row's sum the
    same bits whatever rows it is computed with (row blocks of 3 and 5: a
    step split across any number of threads gives one thread's bits)."""
    rng = np.random.default_rng(m * 1000 + k)
    w = rng.standard_normal((m, k)).astype(np.float32)
    a = rng.standard_normal(k).astype(np.float32)
    y0 = rng.standard_normal(m).astype(np.float32)
    exact = w.astype(np.float64) @ a.astype(np.float64)
    for variant in _variants(module):
        _check_both_ways(lambda y, acc: module.row_dot_product(w, a, y, acc), y0, exact, k,
                         variant)
        if variant == "blas":
            continue
        for accumulate in (False, True):
            whole = y0.copy()
            module.row_dot_product(w, a, whole, accumulate)
            for block in (3, 5):
                parts = y0.copy()
                for r in range(0, m, block):
                    module.row_dot_product(w[r:r + block], a, parts[r:r + block], accumulate)
                np.testing.assert_array_equal(parts, whole, err_msg=f"{variant} {block}")


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("m,k", [(1, 1), (7, 5), (9, 16), (37, 53), (64, 256)])
@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_row_dot_products_on_16_bit_weights(name, module, m, k, fmt):
    """rows_dot16 (weights widened in registers; the portable loop with the
    "blas" selection) gives the bits of rows_dot on the widened float32
    weights, in every variant."""
    from fastrnn.quantization import round_weights
    rng = np.random.default_rng(m * 100 + k)
    codes, _, wide = round_weights(rng.standard_normal((m, k)).astype(np.float32), fmt)
    codes = codes.view(np.uint16)
    a = rng.standard_normal(k).astype(np.float32)
    y0 = rng.standard_normal(m).astype(np.float32)
    for variant in _variants(module):
        for accumulate in (False, True):
            y16, y32 = y0.copy(), y0.copy()
            module.row_dot_product16(codes, a, y16, accumulate, fmt == "bfloat16")
            if variant == "blas":       # (rows_dot is BLAS's gemv then: compare with float64)
                want = (wide.astype(np.float64) @ a) + (y0 if accumulate else 0)
                np.testing.assert_allclose(y16, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))
            else:
                module.row_dot_product(wide, a, y32, accumulate)
                np.testing.assert_array_equal(y16, y32, err_msg=variant)
    with pytest.raises(ValueError, match="row_dot_product16: W"):
        module.row_dot_product16(codes, a[:-1] if k > 1 else np.zeros(2, np.float32), y0,
                                 False, False)


@pytest.mark.parametrize("name,module", VARIANTS)
def test_every_half_widens_exactly(name, module):
    """Every finite IEEE half (normals, subnormals, zeros) widens to the float
    numpy gives, on the F16C path and the portable one."""
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    finite = halves[np.isfinite(halves.view(np.float16))]
    w = np.zeros((finite.size, 8), np.uint16)
    w[:, 0] = finite
    a = np.zeros(8, np.float32)
    a[0] = 1
    for variant in _variants(module):
        y = np.zeros(finite.size, np.float32)
        module.row_dot_product16(w, a, y, False, False)
        np.testing.assert_array_equal(y, finite.view(np.float16).astype(np.float32),
                                      err_msg=variant)


@contextlib.contextmanager
def _cache_sizes(l1d, l2):
    """The products blocked for these caches inside; the plan's caches after."""
    from fastrnn import _cpu
    from fastrnn._kernels import _panels
    _panels.set_cache_sizes(l1d, l2)
    try:
        yield _panels
    finally:
        caches = _cpu.plan().caches
        _panels.set_cache_sizes(caches.l1d, caches.l2)


@pytest.fixture
def small_caches():
    """The products blocked for a tiny machine (4 KiB L1d, 64 KiB L2): many
    blocks of k and of rows at small sizes."""
    with _cache_sizes(4096, 65536) as panels:
        yield panels


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 33])
def test_packed_rows_of_every_tile(m):
    """A's rows (here 4 KiB apart, k = 1024) are packed tile by tile, eight
    steps at a time through a register transpose, one or two rows read in
    place: every tile row count, with blocks of
    k that are not a multiple of eight (an L2 of 320 KiB makes them 342, 342
    and 340 steps: the last steps packed one by one), against float64 numpy
    with every variant."""
    with _cache_sizes(32 << 10, 320 << 10) as panels:
        def check_blocks(variant):
            if variant != "blas":
                assert panels.blocking(1024)["kc"] % 8 != 0, panels.blocking(1024)
        for _, module in VARIANTS:
            _check_panel_products(module, m, 40, 1024, check_blocks)


@pytest.mark.parametrize("m,n,k", [(300, 40, 100), (13, 33, 70), (1, 100, 65), (2, 129, 97),
                                   (7, 17, 200), (61, 50, 31), (13, 33, 300),
                                   (20, 100, 200)])
def test_blocked_panel_products(small_caches, m, n, k):
    """Blocks of k (partial sums added into C) and of rows (packed A refilled),
    tiles of every row count, W beyond the L2 (AVX2 prefetches the next
    panels: 20 x 100 x 200), with every variant against float64 numpy."""
    def check_blocks(variant):
        if variant != "blas":
            blocks = small_caches.blocking(k)
            # k spans several blocks unless one holds it: a group's panels of kc
            # rows fill a quarter of the 64 KiB L2
            assert blocks["kc"] < k or k <= 16384 // (blocks["group"] * 4), blocks
            assert blocks["kc"] * blocks["mc"] <= small_caches.PACKED_A_FLOATS
    _check_panel_products(baseline, m, n, k, check_blocks)


def _check_products_on_rows(module, m, gates, H, k, u0, units):
    """panel_product_rows (W's rows of units [u0, u0 + units) of every gate
    block, packed a group at a time as the product reaches them) with every
    panel variant of module: to the bit panel_product on those rows packed
    whole (the same blocks, tiles and order of sums), both ways, and against
    float64 numpy."""
    rng = np.random.default_rng(m * k + units)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((gates, H, k)).astype(np.float32)
    rows = np.ascontiguousarray(w[:, u0:u0 + units].reshape(gates * units, k))
    c0 = rng.standard_normal((m, gates * units)).astype(np.float32)
    exact = a.astype(np.float64) @ rows.T.astype(np.float64)
    for variant in _variants(module):
        if variant == "blas":
            with pytest.raises(ValueError, match="needs a panel variant"):
                module.panel_product_rows(a, w, u0, units, c0.copy(), False)
            continue
        for accumulate in (False, True):
            want, whole, got = c0.copy(), c0.copy(), c0.copy()
            module.panel_product(a, rows, want, accumulate)
            module.panel_product_rows(a, w, u0, units, whole, accumulate, whole=True)
            module.panel_product_rows(a, w, u0, units, got, accumulate)
            np.testing.assert_array_equal(whole, want, err_msg=f"{variant} {accumulate}")
            np.testing.assert_array_equal(got, want, err_msg=f"{variant} {accumulate}")
        _check_both_ways(lambda c, acc: module.panel_product_rows(a, w, u0, units, c, acc),
                         c0, exact, k, variant)


# (m, gates, H, k, u0, units): one tile of few rows (groups of the few-rows
# tile's panels) and many; gate blocks that end inside a panel (units not a
# multiple of 16) and a last partial panel; k not a multiple of the register
# width; a whole matrix (u0 0, units H)
ROWS_SHAPES = [(1, 3, 40, 33, 5, 17), (2, 4, 20, 16, 0, 20), (7, 4, 64, 100, 0, 64),
               (9, 4, 37, 300, 3, 21), (50, 3, 128, 1024, 64, 64), (130, 3, 20, 70, 0, 20),
               (13, 1, 100, 2000, 10, 45)]


@pytest.mark.parametrize("name,module", VARIANTS)
@pytest.mark.parametrize("m,gates,H,k,u0,units", ROWS_SHAPES)
def test_products_on_unpacked_rows(name, module, m, gates, H, k, u0, units):
    """The product that packs W's groups as it goes (the unit split's input
    projection over one chunk of steps) on this machine's plan."""
    _check_products_on_rows(module, m, gates, H, k, u0, units)


@pytest.mark.parametrize("name,module", VARIANTS)
def test_products_on_unpacked_rows_refuse_bad_shapes(name, module):
    """Units past a gate block's end, a negative first unit, no units, W's
    rows of another length than A's, C of another shape: a ValueError before
    the kernel runs (each would read or write out of bounds: in a child)."""
    run_isolated(f"""
        import pytest
        from fastrnn import _kernels
        module = dict(_kernels.builds())[{name!r}]
        f32 = np.float32
        a, w = np.zeros((3, 5), f32), np.zeros((2, 8, 5), f32)
        for args in ((a, w, 6, 3, np.zeros((3, 6), f32)), (a, w, -1, 2, np.zeros((3, 4), f32)),
                     (a, w, 0, 0, np.zeros((3, 0), f32)),
                     (a, np.zeros((2, 8, 4), f32), 0, 2, np.zeros((3, 4), f32)),
                     (a, w, 0, 2, np.zeros((3, 5), f32)), (a, w, 0, 2, np.zeros((2, 4), f32))):
            for variant in module.panel_kernels():     # (BLAS too: the shapes come first)
                module.set_panel_kernel(variant)
                with pytest.raises(ValueError, match="w [(]G, H, k[)], 0 <= u0 < u0 [+] units"):
                    module.panel_product_rows(*args, False)
    """)


@pytest.mark.parametrize("m,gates,H,k,u0,units", ROWS_SHAPES)
def test_products_on_unpacked_rows_blocked(small_caches, m, gates, H, k, u0, units):
    """The same under a 64 KiB L2's plan: k in several blocks (each group
    packed again for each), rows of A in several blocks (130 rows, k = 70)."""
    _check_products_on_rows(baseline, m, gates, H, k, u0, units)


@pytest.mark.parametrize("split_units", [False, True])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_projection_packed_as_it_goes(kernels, mode, cls, opts, split_units, monkeypatch):
    """A float32 layer call whose steps fit one chunk, and whose share of
    W_ih in panels exceeds a quarter of L2 (here a 64 KiB L2's plan: 20 KiB
    or more a thread or direction), packs W_ih's panels as its input
    projection reaches them (the unit split's threads their units' rows;
    the batch split's tasks, one per direction, all of them); with chunks of
    one step it packs W_ih whole first. Both give the same bits, forward and
    in a training forward (BLAS, FASTRNN_PANEL=blas, may pick other kernels
    for other row counts: within a float32 rounding)."""
    monkeypatch.setattr(_engine, "_split_units", lambda *a: split_units)
    rng = np.random.default_rng(3)
    layer = cls(160, 64, bidirectional=not split_units, seed=2, **opts)
    x = rng.standard_normal((9, 2, 160)).astype(np.float32)
    lengths = np.array([9, 6])
    with _cache_sizes(32 << 10, 64 << 10):
        one = layer(x, lengths=lengths)
        trained = layer.forward(x, lengths=lengths)[:2]
        monkeypatch.setattr(_engine, "_STEP_CHUNK_ELEMENTS", 1)   # one step per chunk
        runs = ((layer(x, lengths=lengths), one),
                (layer.forward(x, lengths=lengths)[:2], trained))
    for got, want in runs:
        for a, b in zip(fastrnn_leaves(got), fastrnn_leaves(want)):
            if kernels.panel_kernel() == "blas":
                # relative: the ReLU RNN's outputs reach 2-3, where OpenBLAS's
                # Haswell kernels on Zen 3 (the projection's sums over k = 160
                # in another order for 18 rows than for 2) differed by 5 ulp
                np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)
            else:
                np.testing.assert_array_equal(a, b)


def fastrnn_leaves(out):
    """The arrays of a layer's (y, state) output, a state pair flattened."""
    y, state = out
    return [y, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("split_units", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_forward(kernels, mode, cls, opts, dtype, split_units, monkeypatch):
    monkeypatch.setattr(_engine, "_split_units", lambda *a: split_units)
    rng = np.random.default_rng(0)
    layer = cls(5, 19, num_layers=2, bidirectional=not split_units, dtype=dtype, seed=1,
                **opts)
    x = rng.standard_normal((8, 6, 5)).astype(dtype)
    _check_layer(layer, mode, opts, x, rng, lengths=np.array([8, 3, 5, 1, 8, 2]),
                 with_state=True)
    cell = {"rnn": fastrnn.RNNCell, "gru": fastrnn.GRUCell, "lstm": fastrnn.LSTMCell}[mode](
        5, 19, dtype=dtype, **opts)
    one = cls(5, 19, dtype=dtype, **opts)
    one.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    y, _ = one(x[:1])
    out = cell(x[0])
    h = out[0] if mode == "lstm" else out
    np.testing.assert_allclose(h, y[0], rtol=0, atol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_backward(kernels, mode, cls, opts):
    rng = np.random.default_rng(2)
    layer = cls(3, 17, bidirectional=True, dtype=np.float64, seed=3, **opts)
    check_module_gradients(layer, rng.standard_normal((4, 3, 3)), lengths=np.array([4, 1, 3]))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("split_units", [False, True], ids=["batch-split", "unit-split"])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_backward_both_splits(kernels, mode, cls, opts, split_units, threads, monkeypatch):
    """Training with the batch or the hidden units split across threads (the
    unit split keeps one block of storage and meets at barriers in backward)."""
    monkeypatch.setattr(_engine, "_split_units", lambda *a: split_units)
    fastrnn.set_num_threads(threads)
    rng = np.random.default_rng(6)
    layer = cls(3, 7, num_layers=2, dtype=np.float64, seed=7, **opts)
    state = rng.standard_normal((2, 4, 7))
    hx = (state, rng.standard_normal((2, 4, 7))) if mode == "lstm" else state
    check_module_gradients(layer, rng.standard_normal((5, 4, 3)), hx=hx,
                           lengths=np.array([5, 2, 4, 1]))


@pytest.mark.parametrize("lengths", [[7, 2, 6, 7, 1], [7] * 9 + [2, 6, 1]],
                         ids=["23-rows", "bidirectional-72-rows"])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_float32_backward_matches_float64(kernels, mode, cls, opts, lengths):
    """The float32 path (panels where enabled) against the float64 one; from
    DX_PANEL_ROWS packed rows on (72 here) dX runs on W_ih in panels."""
    rng = np.random.default_rng(4)
    lengths = np.array(lengths)
    bidirectional = len(lengths) > 5
    assert not bidirectional or lengths.sum() >= kernels.DX_PANEL_ROWS
    l64 = cls(6, 21, dtype=np.float64, seed=5, bidirectional=bidirectional, **opts)
    l32 = cls(6, 21, dtype=np.float32, bidirectional=bidirectional, **opts)
    l32.load_state_dict(l64.state_dict())
    x = rng.standard_normal((7, len(lengths), 6))
    results = []
    for layer, arr in ((l64, x), (l32, x.astype(np.float32))):
        y, _, ctx = layer.forward(arr, lengths=lengths)
        dx, _ = layer.backward(ctx, np.ones_like(y))
        results.append((dx, {k: v.copy() for k, v in layer.grads.items()}))
    (dx64, g64), (dx32, g32) = results
    np.testing.assert_allclose(dx32, dx64, rtol=0, atol=1e-4 * max(1, np.abs(dx64).max()))
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=0,
                                   atol=1e-4 * max(1, np.abs(g64[k]).max()), err_msg=k)
