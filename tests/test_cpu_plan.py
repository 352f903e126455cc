"""The CPU plan: caches read from sysfs (a fake tree here), the FASTRNN_CACHE
override, and what `python -m fastrnn info` prints."""
import subprocess
import sys

import pytest

import fastrnn
from fastrnn import _cpu


def _sysfs(root, entries):
    for i, (level, kind, size, shared) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
        if shared is not None:
            (d / "shared_cpu_list").write_text(f"{shared}\n")
    return str(root)


def test_caches_from_sysfs(tmp_path):
    root = _sysfs(tmp_path, [(1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
                             (2, "Unified", "1024K", "0"), (3, "Unified", "32768K", "0-7,16-23")])
    c = _cpu.read_caches(root)
    assert (c.l1d, c.l2, c.l3, c.l3_shared_by, c.source) == (48 << 10, 1 << 20, 32 << 20, 16,
                                                              "sysfs")


def test_missing_or_odd_sysfs(tmp_path):
    assert _cpu.read_caches(str(tmp_path / "absent")) is None
    assert _cpu.read_caches(str(tmp_path)) is None                   # no index* entries
    root = _sysfs(tmp_path, [(2, "Unified", "not a size", None), (1, "Data", "32K", None)])
    c = _cpu.read_caches(root)
    assert (c.l1d, c.l2, c.l3) == (32 << 10, None, None)           # the bad entry skipped


@pytest.mark.parametrize("text,size", [("512K", 512 << 10), ("32 MiB", 32 << 20),
                                       ("1m", 1 << 20), ("65536", 65536), ("2G", 2 << 30)])
def test_sizes(text, size):
    assert _cpu.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "-5K", "1.5M", "12T"])
def test_bad_sizes(text):
    with pytest.raises(ValueError, match="not a cache size"):
        _cpu.parse_size(text)


def _config_in_child(env):
    code = "import fastrnn; c = fastrnn.show_config(); print('CACHES', c['caches'])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, **env})


def test_cache_override_is_what_the_plan_uses():
    result = _config_in_child({"FASTRNN_CACHE": "l1d=64K, l2=256K, l3=8M"})
    assert result.returncode == 0, result.stderr
    assert "'l1d': 65536, 'l2': 262144, 'l3': 8388608" in result.stdout
    assert "'source': 'FASTRNN_CACHE'" in result.stdout
    assert "caches per core:" in result.stdout and "L2 256 KiB" in result.stdout
    # the thread splits follow the plan: W_hh beyond half the L1d and beyond
    # the L2, one-row steps to half the L3
    assert "W_hh exceeds 32 KiB (up to 8 once it exceeds 256 KiB)" in result.stdout
    assert "to 4 MiB of weights" in result.stdout
    assert "beyond 8 MiB" in result.stdout


@pytest.mark.parametrize("text", ["l2=abc", "l4=1M", "l2"])
def test_bad_cache_override_refuses_the_import(text):
    result = _config_in_child({"FASTRNN_CACHE": text})
    assert result.returncode != 0
    assert "FASTRNN_CACHE" in result.stderr.strip().splitlines()[-1]


def test_info_prints_the_plan(capsys):
    cfg = fastrnn.show_config()
    out = capsys.readouterr().out
    assert "cpu: " in out and "caches per core: " in out and "panels of 16 rows" in out
    assert cfg["panel_variants"][-1] == "blas"
    assert cfg["panel_product"] in cfg["panel_variants"]
    # the reduced-weight instructions the CPU lists
    assert set(cfg["reduced_weights"]) == {"float16", "bfloat16", "int8"}
    assert "reduced_weights (fastrnn.quantize" in out
    assert ("f16c" in cfg["reduced_weights"]["float16"]) == ("f16c" in _cpu.cpu_flags())
    # and how the kernels multiply them here (dot products where the CPU has them)
    from fastrnn._kernels import _panels
    kind = _panels.int8_dot_kind()
    assert ("int8 dot products (AVX-512 VNNI)" in out) == (kind == "avx512_vnni")
    assert ("int8 dot products (AVX2 vpmaddubsw)" in out) == (kind == "avx2")
    assert ("bfloat16 dot products (AVX512-BF16)" in out) == _panels.bf16_dot_products()
    assert (kind == "avx512_vnni") <= ("avx512_vnni" in _cpu.cpu_flags())
    # (every panel variant has int8 dot products; BLAS alone has none)
    assert (kind is None) == (_panels.panel_kernel() == "blas")
    assert _panels.bf16_dot_products() <= ("avx512_bf16" in _cpu.cpu_flags())
    # the interop packages, from their metadata (the test extra installs onnx)
    assert set(cfg["interop"]) == {"torch", "keras", "onnx", "onnxruntime"}
    onnx = pytest.importorskip("onnx")
    assert cfg["interop"]["onnx"] == onnx.__version__
    assert "interop: torch " in out and "onnx " + onnx.__version__ in out


def test_blocks_follow_the_caches():
    """The products' blocks are worked out from the plan's caches: a smaller
    L2 gives shorter blocks of k and fewer rows per block."""
    from fastrnn._kernels import _panels
    if _panels.panel_kernel() == "blas":
        pytest.skip("no panel variant on this CPU")
    caches = _cpu.plan().caches
    try:
        _panels.set_cache_sizes(64 << 10, 1 << 20)
        big = _panels.blocking(1 << 16)
        _panels.set_cache_sizes(16 << 10, 64 << 10)
        small = _panels.blocking(1 << 16)
    finally:
        _panels.set_cache_sizes(caches.l1d, caches.l2)
    assert small["kc"] * 2 <= big["kc"]
    assert small["mc"] * small["kc"] * 4 <= 32 << 10        # half of that L2
    assert small["kc"] * small["group"] * 4 <= 16 << 10     # a group's panels: a quarter of L2
    assert small["tile"] == big["tile"] and small["group"] == big["group"]
    # a group is whole tiles' panels
    assert small["group"] % small["tile"][1] == 0
    result = _config_in_child({"FASTRNN_CACHE": "l1d=16K,l2=64K"})
    assert result.returncode == 0, result.stderr
    assert f"k in blocks of <= {small['kc']} " in result.stdout
    assert f"rows of A in blocks of <= {small['mc']} " in result.stdout


def test_thread_split_follows_the_caches(monkeypatch):
    """A batch of up to 8 rows per thread splits its units when one
    direction's W_hh exceeds the plan's L2, a smaller batch when it exceeds
    half the L1d; a one-step call splits only past the L3; the thresholds
    move with FASTRNN_CACHE."""
    from fastrnn import _engine
    monkeypatch.setattr(_engine, "_UNIT_SPLIT_BYTES", 512 << 10)
    monkeypatch.setattr(_engine, "_UNIT_MIN_BYTES", 16 << 10)
    split = _engine._split_units
    assert not split(1, 1, 2, 16 << 10) and split(1, 1, 2, (16 << 10) + 4)
    assert not split(7, 1, 2, 1 << 10) and split(7, 1, 2)    # (no size: the rows decide)
    monkeypatch.setattr(_engine, "_UNIT_MIN_BYTES", 0)        # L1d unknown
    assert split(1, 1, 2, 1 << 10)
    assert split(7, 1, 2) and not split(8, 1, 2)             # few rows: units, whatever the size
    assert split(16, 1, 2, 4 << 20) and not split(17, 1, 2, 4 << 20)
    assert not split(16, 1, 2, 256 << 10)                     # W_hh in L2: the batch splits
    assert not split(4, 2, 2, 4 << 20) and not split(4, 1, 1, 4 << 20)
    monkeypatch.setattr(_engine, "_UNIT_SPLIT_BYTES", None)   # L2 unknown
    assert not split(16, 1, 2, 4 << 20)
    code = ("from fastrnn import _engine; print('BOUNDS', _engine._UNIT_SPLIT_BYTES, "
            "_engine._CELL_SPLIT_BYTES, _engine._UNIT_MIN_BYTES)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**__import__("os").environ,
                                              "FASTRNN_CACHE": "l1d=48K,l2=2M,l3=8M"})
    assert result.returncode == 0, result.stderr
    assert f"BOUNDS {2 << 20} {8 << 20} {24 << 10}" in result.stdout


@pytest.mark.parametrize("text", ["l1d=1,l2=1,l3=1", "l1d=1G,l2=1G,l3=1G", "l1d=4K,l2=64K"])
def test_extreme_cache_sizes_give_the_same_answers(text):
    """Caches the products cannot block for (too small: the kernels keep their
    small defaults; huge: the blocks stop at the kernel's packed block) run
    the same layers to the same answers as this machine's plan, within
    float32 rounding (the blocks of k change the order of the sums)."""
    code = """
import numpy as np, fastrnn
rng = np.random.default_rng(0)
out = []
for cls, H, B in ((fastrnn.LSTM, 300, 20), (fastrnn.GRU, 64, 1), (fastrnn.RNN, 520, 7)):
    layer = cls(H, H, seed=1)
    out.append(layer(rng.standard_normal((5, B, H)).astype(np.float32))[0])
np.save(__import__("sys").argv[1], np.concatenate([o.ravel() for o in out]))
"""
    import os
    import tempfile
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, env in (("plan", {}), ("odd", {"FASTRNN_CACHE": text})):
            paths[name] = os.path.join(tmp, name + ".npy")
            result = subprocess.run([sys.executable, "-c", code, paths[name]],
                                    capture_output=True, text=True, timeout=120,
                                    env={**os.environ, **env})
            assert result.returncode == 0, result.stderr
        np.testing.assert_allclose(np.load(paths["odd"]), np.load(paths["plan"]), rtol=0,
                                   atol=2e-5)
