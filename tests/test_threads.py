"""Kernels release the GIL; concurrent callers get the answers they get alone."""
import numpy as np
import pytest

import fastrnn
from fastrnn import _engine, _threads
from concurrent_calls import in_threads


@pytest.mark.parametrize("bidirectional", [True, False], ids=["batch-split", "unit-split"])
@pytest.mark.parametrize("cls", [fastrnn.RNN, fastrnn.GRU, fastrnn.LSTM])
def test_python_threads_share_one_model(cls, bidirectional):
    """Concurrent calls, each with its own thread team (and, for small
    unidirectional batches, its own barriers)."""
    layer = cls(16, 32, num_layers=2, bidirectional=bidirectional, seed=0)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((50, 1 + i, 16)).astype(np.float32) for i in range(6)]
    lengths = [rng.integers(1, 51, 1 + i) for i in range(6)]
    alone = [layer(x, lengths=n)[0] for x, n in zip(inputs, lengths)]
    results = [[None] * 6 for _ in range(4)]

    def work(k):
        for rep in range(3):
            for i in range((k + rep) % 6, 6):
                results[k][i] = layer(inputs[i], lengths=lengths[i])[0]

    assert not in_threads(work, 4)
    # a concurrent call may run its unit split alone (its partner late,
    # fastrnn/_team.h): to the bit the same on float32 panels; BLAS
    # (FASTRNN_PANEL=blas) may pick other kernels for other shares
    exact = _engine._k.panel_kernel() != "blas"
    for k in range(4):
        for i in range(6):
            if results[k][i] is not None:
                if exact:
                    np.testing.assert_array_equal(results[k][i], alone[i])
                else:
                    np.testing.assert_allclose(results[k][i], alone[i], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [fastrnn.RNNCell, fastrnn.GRUCell, fastrnn.LSTMCell])
def test_python_threads_share_one_cell_split_across_threads(cls):
    """Concurrent one-row cell steps whose units split across fastrnn's
    threads (forced from 0 bytes): each call its own team and workspace;
    the same bits as alone, whether a call ran as a team or alone."""
    kernels = _engine._k
    cell = cls(9, 40, seed=0)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 9)).astype(np.float32) for _ in range(8)]
    old = kernels.set_split_step_bytes(0)
    results = [[None] * 8 for _ in range(4)]

    def work(k):
        for rep in range(20):
            results[k][(k + rep) % 8] = cell(inputs[(k + rep) % 8])

    try:
        fastrnn.set_num_threads(2)
        alone = [cell(x) for x in inputs]
        errors = in_threads(work, 4)
    finally:
        kernels.set_split_step_bytes(old)
        fastrnn.set_num_threads(None)
    assert not errors

    def states(v):                       # (h,) or the LSTMCell's (h, c)
        return v if isinstance(v, tuple) else (v,)

    for k in range(4):
        for i in range(8):
            for got, want in zip(states(results[k][i]), states(alone[i])):
                np.testing.assert_array_equal(got, want)


def test_blas_thread_setting_is_restored():
    libs = _threads._blas_controllers()[0]
    before = [lib.get_num_threads() for lib in libs]
    fastrnn.LSTM(4, 8)(np.zeros((3, 2, 4), np.float32))
    assert [lib.get_num_threads() for lib in libs] == before
    with _threads.serial_blas():
        assert all(lib.get_num_threads() == 1 for lib in libs)
        with _threads.serial_blas():
            assert all(lib.get_num_threads() == 1 for lib in libs)
        assert all(lib.get_num_threads() == 1 for lib in libs)
    assert [lib.get_num_threads() for lib in libs] == before


def test_show_config_reports_openmp_threads_and_blas(capsys):
    cfg = fastrnn.show_config()
    out = capsys.readouterr().out
    assert isinstance(cfg["openmp"], bool)
    assert cfg["num_threads"] == fastrnn.get_num_threads() >= 1
    assert cfg["blas"] and "openmp:" in out and "blas:" in out



def test_barrier_timer_checks_its_arguments():
    """bench/limits.py's barrier timer: bad counts are refused before any thread starts."""
    from fastrnn._kernels import recurrent
    for threads, rounds in ((0, 10), (2, 0)):
        with pytest.raises(ValueError, match="num_threads and rounds must be >= 1"):
            recurrent.barrier_seconds(threads, rounds, True)
    for spin in (True, False):
        assert recurrent.barrier_seconds(2, 100, spin) > 0


def test_gate_pass_timer_checks_its_arguments():
    """bench/limits.py's gate-pass timer, on every kernel build: bad kinds and
    counts are refused before any memory is touched (in a child process: a
    kind out of range once reached the kernel and crashed); each cell kind
    times."""
    from isolated import run_isolated
    run_isolated("""
        import pytest
        from fastrnn import _kernels
        from fastrnn._kernels._cells import CellKind
        for name, module in _kernels.builds():
            for kind, rows, hidden, reps in ((5, 1, 8, 1), (-1, 1, 8, 1), (2, 0, 8, 1),
                                             (2, 1, 0, 1), (2, 1, 8, 0)):
                with pytest.raises(ValueError, match="gate_pass_seconds: a cell kind"):
                    module.gate_pass_seconds(kind, rows, hidden, reps)
            for kind in CellKind:
                assert module.gate_pass_seconds(kind, 3, 17, 2) > 0, (name, kind)
    """)


def test_blas_held_to_one_thread_only_where_kernels_call_it(monkeypatch):
    """Calls whose kernels multiply only on packed panels (float32, enough
    steps) skip the BLAS thread-count changes; the others keep them."""
    from fastrnn import _engine, _module
    entered = []
    real = _threads.serial_blas

    def counting():
        entered.append(1)
        return real()

    monkeypatch.setattr(_module, "serial_blas", counting)
    x = np.zeros((8, 1, 3), np.float32)

    def count(layer, x):
        entered.clear()
        layer(x)
        return len(entered)

    k = _engine._k
    before = k.panel_kernel()
    try:
        for variant in k.panel_kernels():
            k.set_panel_kernel(variant)
            assert count(fastrnn.LSTM(3, 4), x) == (1 if variant == "blas" else 0), variant
    finally:
        k.set_panel_kernel(before)
    assert count(fastrnn.LSTM(3, 4), x[:_engine._PACK_MIN_STEPS - 1]) == 1
    assert count(fastrnn.LSTM(3, 4, dtype=np.float64), x.astype(np.float64)) == 1
    assert count(fastrnn.Stacked([fastrnn.GRU(3, 4), fastrnn.GRU(4, 4)]), x) == 1
