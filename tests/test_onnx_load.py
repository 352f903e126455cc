"""fastrnn.onnx.load: ONNX graphs run by fastrnn give ONNX Runtime's outputs.

Graphs built with the onnx helpers (every attribute of the RNN/GRU/LSTM
operators fastrnn computes), fastrnn's own exports, and models exported by
torch.onnx.export (skipped without onnx / onnxruntime / torch)."""
import copy
import pickle
import warnings

import numpy as np
import pytest

import fastrnn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import fastrnn.onnx  # noqa: E402
from onnx_helpers import close, session  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}




def _save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _recurrent_graph(op, I, H, D, *, direction, layout=0, bias=True, lens=False, init=False,
                     attrs=None, P=None, seed=0):
    """A one-node ONNX RNN/GRU/LSTM graph with random weights."""
    rng = np.random.default_rng(seed)
    G = GATES[op] * H
    inits = [numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, G, I)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, G, H)).astype(np.float32), "R")]
    node_inputs = ["X", "W", "R", "B" if bias else "", "lens" if lens else ""]
    if bias:
        inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, 2 * G))
                                             .astype(np.float32), "B"))
    batch_dims = ["B", "T"] if layout else ["T", "B"]
    state_dims = ["B", D, H] if layout else [D, "B", H]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, batch_dims + [I])]
    if lens:
        graph_inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    states = ["h0", "c0"] if op == "LSTM" else ["h0"]
    if init:
        node_inputs += states
        graph_inputs += [helper.make_tensor_value_info(s, TensorProto.FLOAT, state_dims)
                         for s in states]
    if P is not None:
        node_inputs += [""] * (7 - len(node_inputs)) + ["P"]
        inits.append(numpy_helper.from_array(P.astype(np.float32), "P"))
    outputs = ["Y", "Y_h", "Y_c"][:len(states) + 1]
    node = helper.make_node(op, node_inputs, outputs, hidden_size=H, direction=direction,
                            layout=layout, **(attrs or {}))
    y_dims = ["B", "T", D, H] if layout else ["T", D, "B", H]
    graph = helper.make_graph(
        [node], "g", graph_inputs,
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_dims)]
        + [helper.make_tensor_value_info(o, TensorProto.FLOAT, state_dims) for o in outputs[1:]],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _cases():
    rng = np.random.default_rng(21)
    out = []
    for op, extra in (("RNN", {}), ("RNN", {"activations": ["Relu"]}),
                      ("GRU", {"linear_before_reset": 1}), ("GRU", {}), ("LSTM", {})):
        for direction in ("forward", "reverse", "bidirectional"):
            D = 2 if direction == "bidirectional" else 1
            if extra.get("activations"):
                extra = {"activations": ["Relu"] * D}
            out.append(pytest.param(op, direction, dict(extra), int(rng.integers(2)),
                                    bool(rng.integers(2)), bool(rng.integers(2)),
                                    bool(rng.integers(2)),
                                    id=f"{op}-{direction}-{'-'.join(map(str, extra.values()))}"))
    return out


@pytest.mark.parametrize("op,direction,attrs,layout,bias,lens,init", _cases())
def test_operator_attributes_match_onnxruntime(tmp_path, op, direction, attrs, layout, bias,
                                               lens, init):
    I, H, T, B = 4, 5, 6, 3
    D = 2 if direction == "bidirectional" else 1
    model = _recurrent_graph(op, I, H, D, direction=direction, layout=layout, bias=bias,
                             lens=lens, init=init, attrs=attrs)
    rng = np.random.default_rng(1)
    feed = {"X": rng.standard_normal((B, T, I) if layout else (T, B, I)).astype(np.float32)}
    if lens:
        feed["lens"] = np.array([6, 1, 4], np.int32)
    if init:
        shape = (B, D, H) if layout else (D, B, H)
        feed["h0"] = rng.standard_normal(shape).astype(np.float32)
        if op == "LSTM":
            feed["c0"] = rng.standard_normal(shape).astype(np.float32)
    if layout:
        # ONNX Runtime refuses layout=1: its oracle is the same node at layout 0
        # on the transposed arrays (the spec's definition of layout)
        time_major = _recurrent_graph(op, I, H, D, direction=direction, layout=0, bias=bias,
                                      lens=lens, init=init, attrs=attrs)
        tfeed = {k: (v.transpose(1, 0, 2) if v.ndim == 3 else v) for k, v in feed.items()}
        expected = session(time_major).run(None, tfeed)
        expected = [expected[0].transpose(2, 0, 1, 3)] + [e.transpose(1, 0, 2)
                                                          for e in expected[1:]]
    else:
        expected = session(model).run(None, feed)
    ours = fastrnn.onnx.load(_save(model, tmp_path))
    got = ours(**feed)
    assert len(got) == len(expected)
    for name, a, b in zip(("Y", "Y_h", "Y_c"), got, expected):
        close(a, b, name)
    (layer,) = ours.layers.values()
    assert layer.bidirectional == (D == 2) and layer.bias == bias


def test_round_trip_of_own_export(tmp_path):
    module = fastrnn.Stacked([fastrnn.LSTM(3, 4, bidirectional=True, seed=1),
                              fastrnn.GRU(8, 5, reset_after=False, seed=2)])
    path = fastrnn.onnx.export(module, tmp_path / "s.onnx", lengths=True)
    loaded = fastrnn.onnx.load(path)
    x = np.random.default_rng(2).standard_normal((7, 3, 3)).astype(np.float32)
    lens = np.array([7, 3, 5], np.int32)
    y, state = module(x, lengths=lens)
    got = loaded(x, lens)
    close(got[0], y, "y")
    close(got[1], state[0][0], "h_n.0")
    close(got[3], state[1], "h_n.1")
    assert loaded.input_names == ["input", "lengths"]
    assert loaded.output_names == ["output", "h_n.0", "c_n.0", "h_n.1"]


def _torch_models():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self, rnn, width, vocab=20):
            super().__init__()
            self.embed = nn.Embedding(vocab, rnn.input_size)
            self.rnn = rnn
            self.head = nn.Linear(width, 5)

        def forward(self, ids):
            y, _ = self.rnn(self.embed(ids))
            return torch.softmax(self.head(torch.relu(y)), dim=-1)

    torch.manual_seed(0)
    return torch, [
        ("bilstm2", Net(nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True), 32)),
        ("gru", Net(nn.GRU(6, 7, batch_first=True), 7)),
        ("rnn3", Net(nn.RNN(6, 5, num_layers=3, nonlinearity="relu"), 5)),
        ("bigru", Net(nn.GRU(4, 6, bidirectional=True), 12)),
    ]


@pytest.mark.parametrize("which", range(4))
def test_torch_onnx_export_models(tmp_path, which):
    torch, models = _torch_models()
    name, net = models[which]
    net.eval()
    batch_first = net.rnn.batch_first
    ids = torch.randint(0, 20, (3, 9) if batch_first else (9, 3))
    path = tmp_path / f"{name}.onnx"
    axes = {0: "B", 1: "T"} if batch_first else {0: "T", 1: "B"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (ids,), str(path), dynamo=False, input_names=["ids"],
                          output_names=["probs"], dynamic_axes={"ids": axes, "probs": axes})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    loaded = fastrnn.onnx.load(path)
    for shape in ((3, 9), (5, 2), (1, 1)):
        ids_np = np.random.default_rng(sum(shape)).integers(0, 20, shape)
        expected = session(path).run(None, {"ids": ids_np})[0]
        close(loaded(ids_np), expected, f"{name} {shape}")
        with torch.no_grad():
            close(loaded(ids_np), net(torch.from_numpy(ids_np)).numpy(), f"{name} vs torch")
    assert ops <= set(fastrnn.onnx.SUPPORTED_OPS)


def test_issue_graph_has_the_listed_nodes(tmp_path):
    """torch.onnx.export(dynamo=False) of Embedding -> 2-layer bidirectional LSTM ->
    Linear emits exactly the nodes the issue lists; all load."""
    torch, models = _torch_models()
    net = models[0][1].eval()
    net.forward = lambda ids: net.head(net.rnn(net.embed(ids))[0])
    ids = torch.randint(0, 20, (2, 5))
    path = tmp_path / "issue.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (ids,), str(path), dynamo=False, input_names=["ids"],
                          dynamic_axes={"ids": {0: "B", 1: "T"}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops == {"Add", "Concat", "Constant", "ConstantOfShape", "Gather", "LSTM", "MatMul",
                   "Reshape", "Shape", "Slice", "Transpose", "Unsqueeze"}
    ids_np = np.random.default_rng(0).integers(0, 20, (4, 6))
    close(fastrnn.onnx.load(path)(ids_np),
           session(path).run(None, {"ids": ids_np})[0], "issue graph")


def _small_graph(nodes, inputs, outputs, inits=(), opset=14):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_plain_nodes_match_onnxruntime(tmp_path, opset):
    """Gemm, Squeeze, Relu/Tanh/Sigmoid/Softmax, Cast, Identity, Sub/Mul,
    Slice with steps, Shape, in both opset forms (axes as attribute or input)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "w")
    c = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "c")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    sl = [numpy_helper.from_array(np.array(v, np.int64), n)
          for n, v in (("s0", [0]), ("s1", [5]), ("sa", [1]), ("ss", [2]))]
    new_axes = opset >= 13
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axes"] if new_axes else ["x"], ["x3"],
                         **({} if new_axes else {"axes": [1]})),
        helper.make_node("Squeeze", ["x3", "axes"] if new_axes else ["x3"], ["x2"],
                         **({} if new_axes else {"axes": [1]})),
        helper.make_node("Gemm", ["x2", "w", "c"], ["g"], alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("Tanh", ["g"], ["t"]),
        helper.make_node("Sigmoid", ["g"], ["s"]),
        helper.make_node("Sub", ["t", "s"], ["d"]),
        helper.make_node("Mul", ["d", "r"], ["m"]),
        helper.make_node("Softmax", ["m"], ["p"], axis=1),
        helper.make_node("Slice", ["p", "s0", "s1", "sa", "ss"], ["q"]),
        helper.make_node("Shape", ["q"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape_f"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["q"], ["out"]),
    ]
    model = _small_graph(nodes, [_vi("x", ["N", 4])],
                         [_vi("out", ["N", 3]), _vi("shape_f", [2])],
                         [w, c, axes, *sl], opset=opset)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    expected = session(model).run(None, {"x": x})
    got = fastrnn.onnx.load(_save(model, tmp_path))(x)
    for a, b in zip(got, expected, strict=True):
        close(a, b, "plain nodes")


def test_legacy_softmax_flattens(tmp_path):
    model = _small_graph([helper.make_node("Softmax", ["x"], ["y"], axis=1)],
                         [_vi("x", [2, 3, 4])], [_vi("y", [2, 3, 4])], opset=11)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    close(fastrnn.onnx.load(_save(model, tmp_path))(x),
           session(model).run(None, {"x": x})[0], "softmax-11")


def _lstm_with(tmp_path, **kw):
    return _save(_recurrent_graph("LSTM", 3, 4, 1, direction="forward", **kw), tmp_path)


@pytest.mark.parametrize("make,match", [
    (lambda p: _lstm_with(p, attrs={"activations": ["Sigmoid", "Tanh", "Gelu"]}),
     r"'#0' \(LSTM\): activations: unknown function 'gelu'"),
    (lambda p: _lstm_with(p, attrs={"activations": ["Sigmoid", "Tanh"]}),
     "must list 3 functions"),
    (lambda p: _lstm_with(p, attrs={"clip": -1.0}), "clip must be positive"),
    (lambda p: _lstm_with(p, P=np.ones((1, 5))), r"P must be \(1, 12\)"),
    (lambda p: _save(_small_graph([helper.make_node("Conv", ["x", "x"], ["y"], name="conv1")],
                                  [_vi("x", [1, 1, 3])], [_vi("y", [1, 1, 1])]), p),
     r"node 'conv1' \(Conv\): op 'Conv' is not supported"),
    (lambda p: _save(_small_graph([helper.make_node("Relu", ["z"], ["y"])],
                                  [_vi("x", [1])], [_vi("y", [1])]), p),
     "input 'z' is not defined"),
    (lambda p: _save(_small_graph([helper.make_node("Relu", ["x"], ["y"], domain="com.x")],
                                  [_vi("x", [1])], [_vi("y", [1])]), p), "domain 'com.x'"),
])
def test_refusals_name_the_node(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        fastrnn.onnx.load(make(tmp_path))


def test_computed_weights_refused(tmp_path):
    node = helper.make_node("LSTM", ["X", "Wx", "R"], ["Y"], hidden_size=2)
    ident = helper.make_node("Identity", ["W"], ["Wx"])
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 8, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 8, 2)).astype(np.float32), "R")]
    model = _small_graph([ident, node], [_vi("X", ["T", "B", 3])], [_vi("Y", ["T", 1, "B", 2])],
                         inits)
    with pytest.raises(ValueError, match="W must be a constant"):
        fastrnn.onnx.load(_save(model, tmp_path))


def test_external_data_never_read(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(24, dtype=np.float32).tobytes())
    tensor = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 6],
                              data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", "96")):
        tensor.external_data.add(key=key, value=value)
    model = _small_graph([helper.make_node("MatMul", ["x", "w"], ["y"])],
                         [_vi("x", [1, 4])], [_vi("y", [1, 6])], [tensor])
    path = tmp_path / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match="stored outside the file"):
        fastrnn.onnx.load(path)


def test_bad_files_and_inputs(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(ValueError, match="junk.onnx"):
        fastrnn.onnx.load(junk)
    with pytest.raises(FileNotFoundError):
        fastrnn.onnx.load(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="path"):
        fastrnn.onnx.load(3)
    model = fastrnn.onnx.load(_lstm_with(tmp_path, lens=True))
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(TypeError, match="missing inputs"):
        model(x)
    with pytest.raises(TypeError, match="unknown input 'y'"):
        model(x, np.array([5, 5]), y=1)
    with pytest.raises(TypeError, match="must hold integers"):
        model(x, np.array([5.0, 5.0]))
    with pytest.raises(ValueError, match=r"input 'X' must have shape \(\?, \?, 3\)"):
        model(np.zeros((5, 2, 4), np.float32), np.array([5, 5]))
    with pytest.raises(ValueError, match=r"\(LSTM\): lengths must be in \[1, 5\]"):
        model(x, np.array([6, 1]))
    ids = np.array([[0, 25]])
    emb = fastrnn.onnx.load(fastrnn.onnx.export(fastrnn.Embedding(20, 3), tmp_path / "e.onnx"))
    with pytest.raises(ValueError, match=r"\(Gather\): indices must be in \[-20, 19\]"):
        emb(ids)


def test_copies_and_pickles(tmp_path):
    module = fastrnn.GRU(3, 4, bidirectional=True, seed=1)
    loaded = fastrnn.onnx.load(fastrnn.onnx.export(module, tmp_path / "g.onnx"))
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    expected = loaded(x)
    for other in (copy.deepcopy(loaded), pickle.loads(pickle.dumps(loaded))):
        for a, b in zip(other(x), expected, strict=True):
            np.testing.assert_array_equal(a, b)


# ONNX's cell variants, every one against ONNX Runtime: clip, input_forget,
# peepholes and the activation functions (with alpha / beta), per direction
VARIANTS = [
    ("LSTM", "forward", {"clip": 0.4}, False),
    ("LSTM", "bidirectional", {"input_forget": 1}, False),
    ("LSTM", "reverse", {}, True),
    ("LSTM", "bidirectional", {"clip": 0.7, "input_forget": 1}, True),
    ("LSTM", "forward", {"activations": ["HardSigmoid", "Softsign", "ScaledTanh"],
                         "activation_alpha": [0.3, 1.5], "activation_beta": [0.4, 0.8]}, True),
    ("LSTM", "bidirectional", {"activations": ["Sigmoid", "Tanh", "Tanh",
                                               "HardSigmoid", "Elu", "Softplus"],
                               "activation_alpha": [0.25, 0.9]}, False),
    ("GRU", "forward", {"clip": 0.5, "linear_before_reset": 1}, False),
    ("GRU", "bidirectional", {"activations": ["HardSigmoid", "LeakyRelu", "Sigmoid", "Tanh"],
                              "activation_alpha": [0.2, 0.1]}, False),
    ("GRU", "reverse", {"activations": ["Sigmoid", "Affine"], "activation_alpha": [0.5],
                        "activation_beta": [0.1], "clip": 2.0}, False),
    ("RNN", "forward", {"activations": ["Elu"], "activation_alpha": [0.5]}, False),
    ("RNN", "bidirectional", {"activations": ["Tanh", "Relu"], "clip": 0.3}, False),
    ("RNN", "forward", {"activations": ["ThresholdedRelu"], "activation_alpha": [0.2]}, False),
]


@pytest.mark.parametrize("op,direction,attrs,peepholes", VARIANTS,
                         ids=[f"{v[0]}-{v[1]}-{'-'.join(v[2])}-P{int(v[3])}" for v in VARIANTS])
def test_cell_variants_match_onnxruntime(tmp_path, op, direction, attrs, peepholes):
    I, H, T, B = 3, 4, 6, 3
    D = 2 if direction == "bidirectional" else 1
    P = np.random.default_rng(9).uniform(-1, 1, (D, 3 * H)) if peepholes else None
    model = _recurrent_graph(op, I, H, D, direction=direction, lens=True, init=True,
                             attrs=attrs, P=P, seed=4)
    rng = np.random.default_rng(5)
    feed = {"X": 2 * rng.standard_normal((T, B, I)).astype(np.float32),
            "lens": np.array([6, 2, 5], np.int32),
            "h0": rng.standard_normal((D, B, H)).astype(np.float32)}
    if op == "LSTM":
        feed["c0"] = rng.standard_normal((D, B, H)).astype(np.float32)
    expected = session(model).run(None, feed)
    loaded = fastrnn.onnx.load(_save(model, tmp_path))
    (layer,) = loaded.layers.values()
    # clip, peepholes and coupled gates run in the kernels, other functions on
    # the general path; the RNN's [Tanh, Relu] is the general path too
    assert layer._kernel_variant != layer._general
    for name, a, b in zip(("Y", "Y_h", "Y_c"), loaded(**feed), expected):
        close(a, b, name)
    # and back out: fastrnn's export of the loaded layer runs the same in ONNX Runtime
    if layer._general or layer._kernel_variant:
        again = fastrnn.onnx.export(layer, tmp_path / "again.onnx", lengths=True,
                                    initial_state=True)
        names = {"X": "input", "lens": "lengths", "h0": "h0", "c0": "c0"}
        got = session(again).run(None, {names[k]: v for k, v in feed.items()})
        y = layer(feed["X"], (feed["h0"], feed["c0"]) if op == "LSTM" else feed["h0"],
                  lengths=feed["lens"])[0]
        close(got[0], y, "re-exported y")
