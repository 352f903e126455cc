"""Hostile ONNX files and calls, each in its own process with a timeout and a
memory cap: a clear ValueError/TypeError, never a crash, hang or runaway
allocation (skipped without onnx)."""
import textwrap

import pytest

from isolated import run_isolated

pytest.importorskip("onnx")

PRELUDE = """
import os
import onnx
from onnx import TensorProto, helper, numpy_helper
import fastrnn.onnx

def vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)

def save(nodes, inputs, outputs, inits=(), name="m.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    with open(name, "wb") as f:
        f.write(model.SerializeToString())
    return name

def refused(path, match, call=None):
    try:
        model = fastrnn.onnx.load(path)
        if call is not None:
            call(model)
    except (ValueError, TypeError) as exc:
        assert match in str(exc), (match, str(exc))
        print("refused:", type(exc).__name__, exc)
        return
    raise AssertionError(f"{path} was accepted")
"""

CASES = {
    "huge-declared-tensor": """
        t = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20],
                             raw_data=b"\\0" * 16)
        refused(save([helper.make_node("Identity", ["w"], ["y"])], [], [vi("y", [1])], [t]),
                "cannot be read")
    """,
    "huge-constant-of-shape": """
        shape = numpy_helper.from_array(np.array([1 << 40, 1 << 20], np.int64), "s")
        p = save([helper.make_node("ConstantOfShape", ["s"], ["y"])], [], [vi("y", [1])], [shape])
        refused(p, "at most", lambda m: m())
    """,
    "bad-reshape": """
        shape = numpy_helper.from_array(np.array([7, -1], np.int64), "s")
        p = save([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], [vi("x", [2, 3])],
                 [vi("y", [1])], [shape])
        refused(p, "node 'r' (Reshape)", lambda m: m(np.zeros((2, 3), np.float32)))
    """,
    "truncated-file": """
        m = fastrnn.LSTM(3, 4, num_layers=2)
        fastrnn.onnx.export(m, "full.onnx")
        data = open("full.onnx", "rb").read()
        for cut in (10, len(data) // 3, len(data) - 5):
            with open("cut.onnx", "wb") as f:
                f.write(data[:cut])
            refused("cut.onnx", "cut.onnx")
    """,
    "cycle": """
        p = save([helper.make_node("Add", ["x", "z"], ["z"], name="loop")], [vi("x", [1])],
                 [vi("z", [1])])
        refused(p, "not defined before")
    """,
    "inconsistent-hidden-size": """
        rng = np.random.default_rng(0)
        W = numpy_helper.from_array(rng.standard_normal((1, 8, 3)).astype(np.float32), "W")
        R = numpy_helper.from_array(rng.standard_normal((1, 8, 2)).astype(np.float32), "R")
        p = save([helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=5)],
                 [vi("X", ["T", "B", 3])], [vi("Y", [1])], [W, R])
        refused(p, "must have shape")
        p = save([helper.make_node("GRU", ["X", "W", "R"], ["Y"], direction="sideways")],
                 [vi("X", ["T", "B", 3])], [vi("Y", [1])], [W, R])
        refused(p, "direction")
    """,
    "string-tensor": """
        t = helper.make_tensor("s", TensorProto.STRING, [1], [b"x"])
        refused(save([helper.make_node("Identity", ["s"], ["y"])], [], [vi("y", [1])], [t]),
                "only numeric")
    """,
    "inputs-untouched-and-fork": """
        m = fastrnn.GRU(3, 4, bidirectional=True, seed=1)
        loaded = fastrnn.onnx.load(fastrnn.onnx.export(m, "g.onnx", lengths=True))
        x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
        lens = np.array([5, 2], np.int32)
        x0, lens0 = x.copy(), lens.copy()
        expected = loaded(x, lens)
        assert np.array_equal(x, x0) and np.array_equal(lens, lens0)
        pid = os.fork()
        if pid == 0:
            ok = all(np.array_equal(a, b) for a, b in zip(loaded(x, lens), expected))
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        print("refused: nothing (fork ok)")
    """,
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_onnx(case, tmp_path):
    code = (PRELUDE + f"os.chdir({str(tmp_path)!r})\n" + textwrap.dedent(CASES[case]))
    out = run_isolated(code, timeout=120, memory=1 << 30).stdout
    assert "refused" in out, out
