"""pytest-benchmark suite: fastrnn beside numpy, PyTorch and ONNX Runtime.

    pytest bench --benchmark-group-by=group          # full timings
    FASTRNN_BENCH_SMOKE=1 pytest bench --benchmark-disable   # CI: every case runs once

Each configuration is one benchmark group, so the engines read side by side.
Engines that are not installed (or lack the operation) are skipped.
"""
import importlib.util

import pytest

from bench import engines

CASES = [(cfg, engine) for cfg in engines.CONFIGS for engine in engines.ENGINES
         if cfg.task in engines.TASKS[engine]]


@pytest.mark.parametrize("cfg,engine", CASES,
                         ids=[f"{c.name}-{e}" for c, e in CASES])
def test_engine(benchmark, cfg, engine):
    fn = engines.FACTORIES[engine](cfg)
    if fn is None:
        pytest.skip(f"{engine} is not installed")
    benchmark.group = cfg.name
    benchmark.extra_info.update(engine=engine, threads=engines.THREADS)
    benchmark(fn)


@pytest.mark.parametrize("engine", ["fastrnn", "torch", "onnxruntime"])
def test_full_length_of_varlen_batch(benchmark, engine):
    """The variable-length configuration's batch at full length, for the cost ratio."""
    cfg = next(c for c in engines.CONFIGS if c.task == "varlen")
    fn = engines.FACTORIES[engine](cfg, "full")
    if fn is None:
        pytest.skip(f"{engine} is not installed")
    benchmark.group = cfg.name
    benchmark.extra_info.update(engine=engine + " full", threads=engines.THREADS)
    benchmark(fn)


def test_streaming_step_engines_agree():
    """The one-step rows carry each engine's state from call to call, and
    every engine computes the same steps (ONNX Runtime's through
    initial_h/initial_c)."""
    import numpy as np
    cfg = next(c for c in engines.CONFIGS if c.task == "step")
    outs = {}
    for name in ("fastrnn", "torch", "onnxruntime"):
        fn = engines.FACTORIES[name](cfg)
        if fn is not None:
            outs[name] = np.stack([np.asarray(fn()).reshape(-1) for _ in range(4)])
    want = outs.pop("fastrnn")
    assert np.abs(want[-1] - want[0]).max() > 1e-3          # the state moves on
    for name, got in outs.items():
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_two_builds_side_by_side():
    """bench.ab runs one build against another (here: this checkout twice)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-m", "bench.ab", root, root, "--rounds", "1",
                             "--only", "lstm-h64-b1", "--min-time", "0.001",
                             "--old-env", "FASTRNN_PANEL=blas"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "lstm-h64-b1" in result.stdout and "ratio" in result.stdout
    assert "rounds (middle half)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("lstm-h64-b1"))
    lo, hi = (float(v) for v in row.split()[-1].split("-"))
    assert 0 < lo <= hi                      # one round: its own ratio twice
    assert "{'FASTRNN_PANEL': 'blas'}" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "bench.ab", root, "--new-env", "PANEL"],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


def test_configurations_by_name():
    """engines.config: the table's configurations by name, and shapes outside
    it spelled like their names."""
    from bench.engines import CONFIGS, Config, config
    assert all(config(c.name) is c for c in CONFIGS)
    assert config("gru-h64-b1") == Config("gru-h64-b1", "gru", 64, 64, 1)
    assert config("train-bilstm-i32-h16-b2-t5") == Config(
        "train-bilstm-i32-h16-b2-t5", "lstm", 32, 16, 2, T=5, bidirectional=True, task="train")
    assert config("rnn-h8-b3-t7").T == 7 and config("rnn-h8-b3-t7").task == "infer"
    for bad in ("lstm-h0-b1", "lstm-h64-b1-t0", "lstm-h64", "gru-h64-b1-x", "cell-h8-b1",
                "lstm-h064-b1", " lstm-h64-b1", ""):
        assert config(bad) is None, bad


def test_two_builds_side_by_side_outside_the_table():
    """bench.ab times a shape named outside the table, and refuses a name
    that is neither a configuration nor a shape, saying how to spell one."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-m", "bench.ab", root, root, "--rounds", "1",
                             "--only", "gru-h16-b1-t3,train-lstm-h8-b2-t4", "--min-time", "0.001"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[4:]]
    assert rows == ["gru-h16-b1-t3", "train-lstm-h8-b2-t4"]
    bad = subprocess.run([sys.executable, "-m", "bench.ab", root, "--only", "lstm-h64-b1,gru-h0-b1"],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "gru-h0-b1" in bad.stderr and "[train-][bi]KIND" in bad.stderr


def test_workers_import_the_requested_tree(tmp_path):
    """A worker refuses to run when fastrnn does not come from its tree."""
    from bench.workers import Worker
    with pytest.raises(RuntimeError, match="imported fastrnn from"):
        Worker("fastrnn", tmp_path)


def test_cell_split_runs(capsys):
    """bench.cell_split times the three paths of a cell step and restores
    both thresholds."""
    from bench import cell_split
    from fastrnn import _engine
    before = _engine._CELL_SPLIT_BYTES
    split = _engine._k.set_split_step_bytes(12345)
    most = _engine._k.set_split_step_most(67890)
    cell_split.SIZES, sizes = (8, 16), cell_split.SIZES
    try:
        cell_split.main(["--rounds", "1"])
        assert _engine._k.set_split_step_bytes(split) == 12345
        assert _engine._k.set_split_step_most(most) == 67890
    finally:
        cell_split.SIZES = sizes
    assert _engine._CELL_SPLIT_BYTES == before
    out = capsys.readouterr().out
    assert "H=8 " in out and "H=16 " in out and "split" in out and "as a layer" in out


def test_weight_copy_runs(capsys):
    """bench.weight_copy times both ways and puts the kernel back."""
    from bench import weight_copy
    from fastrnn import _engine
    kernel = _engine._k.forward_layer_units
    weight_copy.main(["--pairs", "1", "train-lstm-h32-b1"])
    assert _engine._k.forward_layer_units is kernel
    out = capsys.readouterr().out
    assert "train-lstm-h32-b1" in out and "ratio" in out


def test_variants_runs(capsys, monkeypatch):
    """bench.variants prints a ratio for every variant and size."""
    from bench import variants
    monkeypatch.setattr(variants, "SIZES", ((8, 1), (8, 3)))
    variants.main(rounds=1)
    out = capsys.readouterr().out
    for name, _ in variants.VARIANTS:
        assert name in out, name
    assert "H=8 B=3" in out


def test_quantize_accuracy_runs(capsys, monkeypatch):
    """bench.quantize_accuracy prints both tables (tiny sizes)."""
    from bench import quantize_accuracy
    monkeypatch.setattr(quantize_accuracy, "SMALL", True)
    quantize_accuracy.main()
    out = capsys.readouterr().out
    assert "output error against float32" in out and "LM perplexity" in out
    for fmt in quantize_accuracy.FORMATS:
        assert fmt in out


def test_quantize_speed_runs(capsys):
    """bench.quantize_speed prints a ratio per format for a layer call and a
    cell step (worker processes; a few steps under FASTRNN_BENCH_SMOKE)."""
    from bench import quantize_speed
    quantize_speed.main(["--rounds", "1", "--min-time", "0.001",
                         "--only", "lstm-h64-b1", "lstmcell-h128-b1"])
    out = capsys.readouterr().out
    for part in ("lstm-h64-b1", "lstmcell-h128-b1", "float16 ", "bfloat16 ", "int8 "):
        assert part in out, part
    if quantize_speed._has_torch():               # PyTorch's dynamic quantization beside
        layer_row = next(line for line in out.splitlines() if line.startswith("lstm-h64-b1"))
        assert "torch qint8 " in layer_row and "torch float16 " in layer_row


def test_quantize_speed_names_any_inference_configuration(capsys):
    """--only takes any inference configuration of bench.engines (a
    bidirectional one here) and refuses a training one, naming the choices."""
    from bench import quantize_speed
    quantize_speed.main(["--rounds", "1", "--min-time", "0.001", "--no-torch",
                         "--only", "bigru-h128-b1"])
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("bigru-h128-b1"))
    assert "f32 packed " in row and "int8 " in row
    with pytest.raises(SystemExit):
        quantize_speed.main(["--only", "train-lstm-h256-b1"])
    assert "no inference or cell configuration ['train-lstm-h256-b1']" in capsys.readouterr().err


def test_limits_runs(capsys):
    """bench.limits prints every section (at small sizes under FASTRNN_BENCH_SMOKE)."""
    from bench import limits
    limits.main(["--rounds", "1"])
    out = capsys.readouterr().out
    for part in ("BLAS sgemm", "-- step products", "-- large products", "dW = dGᵀX",
                 "one-row products", "barrier, 2 threads", "-- batch-1 calls",
                 "lstm-h256-b1     projection"):
        assert part in out, part
    from fastrnn import _kernels
    if _kernels.recurrent.panel_kernel() != "blas":
        assert "-- packing W into panels" in out
        assert "-- dW_ih and dW_hh on one dG" in out and "pair" in out
        assert "read alone" in out and " | read " in out


def test_floors():
    """The bandwidth floor counts W_hh per step and direction (twice in
    training), a cell's two matrices once; the floor is the larger bound."""
    from bench import limits
    by_name = {c.name: c for c in engines.CONFIGS}
    lstm, bi = by_name["lstm-h256-b1"], by_name["bigru-h128-b1"]
    assert limits.streamed_bytes(lstm) == lstm.steps * 4 * (4 * 256) * 256
    assert limits.streamed_bytes(bi) == bi.steps * 4 * 2 * (3 * 128) * 128
    train = by_name["train-lstm-h256-b1"]
    assert limits.streamed_bytes(train) == 2 * train.steps * 4 * (4 * 256) * 256
    cell = by_name["lstmcell-h128-b1"]
    assert limits.streamed_bytes(cell) == 4 * (4 * 128) * (128 + 128)
    peak = 1e11
    for cfg in (lstm, cell, by_name["lstm-h256-b64"]):
        floor, binds = limits.floors(cfg, peak, 2)
        assert floor >= limits.compute_floor(cfg, peak, 2) > 0
        assert binds in ("FLOPs", "bandwidth")
    assert limits.stream_rate(cell, 2) > 0
    # the input projection of a batch-1 call: 2 T D G I; one direction's, twice
    assert limits.projection_flops(lstm) == 2 * lstm.steps * (4 * 256) * 256
    assert limits.projection_flops(bi) == 2 * bi.steps * 2 * (3 * 128) * 128
    odd = engines.Config("odd", "gru", 10, 7, 2, T=3, bidirectional=True)   # I != H, B = 2
    assert limits.projection_flops(odd) == 2 * odd.steps * 2 * 2 * (3 * 7) * 10
    proj, steps = limits.serial_bound(lstm, peak, 2)
    assert proj == limits.projection_flops(lstm) / (2 * peak)
    assert steps == limits.streamed_bytes(lstm) / (2 * limits.stream_rate(lstm, 2))


def test_thread_split_runs(capsys):
    """bench.thread_split times both sides of each split decision and restores them."""
    from bench import thread_split
    from fastrnn import _engine
    before = (_engine._UNIT_SPLIT_BYTES, _engine._split_units, _engine._UNIT_MIN_BYTES)
    thread_split.main(["--rounds", "1"])
    assert (_engine._UNIT_SPLIT_BYTES, _engine._split_units, _engine._UNIT_MIN_BYTES) == before
    out = capsys.readouterr().out
    assert "one thread / unit split" in out and "unit / batch split" in out
    assert "(the rule: one thread)" in out or "(the rule: unit split)" in out


def test_coexist_runs(capsys):
    """bench.coexist prints each of its measurements (small sizes under smoke)."""
    from bench import coexist
    coexist.main(["--rounds", "1", "--config", "lstm-h64-b1"])
    out = capsys.readouterr().out
    assert "after 50 ms idle" in out and "one core busy" in out
    assert "fastrnn alone:  (team calls" in out and "one thread, no busy core: fastrnn" in out


def test_compare_reduced_rows():
    """bench.compare's reduced-weight table: a ratio per format against
    fastrnn float32, the fastest anchor and int8's ratio to it, the targets
    of the row's batch (worker processes; a few steps under
    FASTRNN_BENCH_SMOKE)."""
    from bench import compare
    rows = compare.reduced_rows(["lstm-h256-b1", "lstm-h256-b64"], 1, 0.001)
    assert [r[0] for r in rows] == ["lstm-h256-b1", "lstm-h256-b64"]
    for row in rows:
        assert len(row) == 10 and row[-1] in ("yes", "NO")
        assert all(float(cell) > 0 for cell in row[2:6])  # f32 packed, float16, bfloat16, int8
    assert "int8 <= 0.4" in rows[0][8] and "f32 packed <= 1.05" in rows[0][8]
    assert rows[1][8] == f"each <= {compare.REDUCED_NOISE}"
    if importlib.util.find_spec("torch") is not None:
        assert rows[0][6].split()[0] in ("torch", "onnxruntime")
        assert float(rows[0][7]) > 0


def test_compare_serial_lines():
    """bench.compare's batch-1 lines: fastrnn's time over the serial bound
    (bench.limits.serial_bound), only for the batch-1 inference rows timed."""
    from bench import compare, limits
    cfgs = [c for c in engines.CONFIGS
            if c.name in ("lstm-h64-b1", "lstm-h256-b64", "train-lstm-h256-b1")]
    seconds = {"lstm-h64-b1": 1e-4, "lstm-h256-b64": 0.03, "train-lstm-h256-b1": 3e-3}
    peak = 1e11
    out = compare.serial_lines(cfgs, seconds, peak)
    assert len(out) == 2 and out[1].split()[0] == "lstm-h64-b1"
    proj, steps = limits.serial_bound(cfgs[0], peak, engines.THREADS)
    assert f"= {1e-4 / (proj + steps):.2f} x (" in out[1]
    assert compare.serial_lines(cfgs, {"lstm-h256-b64": 0.03}, peak) == []
    assert compare.serial_lines(cfgs, seconds, None) == []


def test_distributed_runs(capsys):
    """bench.distributed prints a row per job size and the per-task overhead
    (a LocalCluster of two worker processes; tiny sizes)."""
    pytest.importorskip("distributed")
    from bench import distributed
    distributed.main(["--sizes", "50", "120", "--rounds", "1", "--hidden", "8"])
    out = capsys.readouterr().out
    assert "LocalCluster of 2 single-threaded workers" in out and "per task:" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["50", "120"] and all(float(r[-1]) > 0 for r in rows)


def test_step_trace_needs_a_traced_build(capsys):
    """The default build compiles the step marks out: no trace from any
    kernel build, and the script says how to build one."""
    import fastrnn
    from bench import step_trace
    for _, module in fastrnn._kernels.builds():
        assert module.step_trace() is None
    with pytest.raises(SystemExit) as stop:
        step_trace.main(["lstm-h64-b1"])
    assert stop.value.code == 2
    assert "FASTRNN_TRACE=1" in capsys.readouterr().err


def test_step_trace_report():
    """The per-step columns are the intervals between the marks, in order."""
    import numpy as np
    from bench import step_trace
    cfg = next(c for c in engines.CONFIGS if c.name == "lstm-h64-b1")
    calls, steps = 2, cfg.steps
    gaps = np.array([0.0, 1.0, 0.5, 0.25, 0.125])        # product, gate, copies, wait
    step = np.cumsum(gaps)                                # one step's five marks
    start = np.arange(calls * steps, dtype=float).reshape(calls, steps, 1) * 10
    threads = [start + step, start + step * 2]
    text = step_trace.report(cfg, np.array([1e-3, 2e-3]), threads)
    rows = [line.split() for line in text.splitlines()[2:4]]
    assert [float(v) for v in rows[0][1:]] == [1.0, 0.5, 0.25, 0.125, 1.875, calls]
    assert [float(v) for v in rows[1][1:]] == [2.0, 1.0, 0.5, 0.25, 3.75, calls]
    span = (steps - 1) * 10 + 1.875
    assert f"a 1500.0 us call: steps {steps * 1.875:.1f} us" in text
    assert f"between them {span - steps * 1.875:.1f} us" in text
    assert f"before and after them {1500 - span:.1f} us" in text


def test_step_trace_picks_the_unit_split_rows():
    """By default the rows the engine runs on the unit split: one direction,
    inference or a training forward, few rows (or weights beyond L2); not
    the batch split's, not one thread's (W_hh within half of L1d)."""
    from bench import step_trace
    picked = {c.name for c in engines.CONFIGS if step_trace.takes_unit_split(c)}
    assert {"lstm-h64-b1", "gru-h256-b1", "train-lstm-h256-b1"} <= picked
    assert not picked & {"lstm-h256-b64", "bilstm-h128-b32", "bigru-h128-b1",
                         "train-lstm-h256-b64", "train-lstm-h32-b1", "lstmcell-h128-b1"}


def test_step_trace_report_names_a_training_forward():
    """A training row's report says it traced training forwards."""
    import numpy as np
    from bench import step_trace
    cfg = next(c for c in engines.CONFIGS if c.name == "train-lstm-h256-b1")
    marks = np.cumsum(np.ones((1, cfg.steps, 5)), axis=2)
    text = step_trace.report(cfg, np.array([1e-3]), [marks])
    assert "1 training forwards: per step" in text


def test_call_cost_runs(capsys, monkeypatch):
    """bench.call_cost times the bound call and the general path of each
    case it binds (none under FASTRNN_PANEL=blas)."""
    from bench import call_cost
    from fastrnn import _engine
    monkeypatch.setattr(call_cost, "CONFIGS", ("lstm-h64-b1", "bigru-h128-b1"))
    monkeypatch.setattr(call_cost, "STEPS", (4, 6))
    call_cost.main(["--rounds", "1"])
    out = capsys.readouterr().out
    if _engine._k.panel_kernel() == "blas":
        assert "T=" not in out
    else:
        assert "lstm-h64-b1    T=4 " in out and "T=6 " in out and "less a call" in out
        assert "bigru-h128-b1  T=4 " in out           # (a TaskCall)
        assert "its output y at a line" in out and "the kernels' scratch at a line" in out
        assert out.count("48 bytes past:") == 2
