"""Benchmark configurations and the engines that run them, with shared weights.

Each engine factory returns a zero-argument callable that runs one
configuration once (or None when the engine is not installed or has no such
operation). Used by the pytest-benchmark suite (test_bench.py) and by the
one-run comparison table (compare.py).
"""
import functools
import os
import re
from dataclasses import dataclass

import numpy as np

import fastrnn

from bench import numpy_engine

SMOKE = os.environ.get("FASTRNN_BENCH_SMOKE", "") not in ("", "0")
THREADS = int(os.environ.get("FASTRNN_BENCH_THREADS", "2"))
# gate blocks of W_ih and W_hh per kind (the configurations' "kind")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


@dataclass(frozen=True)
class Config:
    name: str
    kind: str                 # "lstm", "gru", "rnn"
    I: int
    H: int
    B: int
    T: int = 100
    bidirectional: bool = False
    task: str = "infer"       # "infer", "train", "cell", "varlen", "step"
    target: float = 1.0       # ratio to reach (fastrnn / fastest other engine)

    @property
    def steps(self):
        return min(self.T, 4) if SMOKE else self.T


CONFIGS = [
    Config("lstm-h64-b1", "lstm", 64, 64, 1, target=0.6),
    Config("lstm-h256-b1", "lstm", 256, 256, 1, target=0.6),
    Config("gru-h256-b1", "gru", 256, 256, 1, target=0.6),
    Config("lstm-h256-b64", "lstm", 256, 256, 64, target=0.9),
    Config("gru-h256-b64", "gru", 256, 256, 64, target=0.9),
    Config("rnn-h256-b64", "rnn", 256, 256, 64, target=0.9),
    Config("lstm-h512-b16", "lstm", 512, 512, 16, target=0.9),
    # weights larger than a 512 KiB L2 (W_hh 4 MiB, 12 MiB, 16 MiB): the
    # small-cache regime on any machine
    Config("lstm-h512-b64", "lstm", 512, 512, 64, T=50, target=0.9),
    Config("gru-h1024-b1", "gru", 1024, 1024, 1, T=50, target=0.6),
    Config("lstm-h1024-b16", "lstm", 1024, 1024, 16, T=50, target=0.9),
    Config("bilstm-h128-b32", "lstm", 128, 128, 32, bidirectional=True, target=0.6),
    Config("bigru-h128-b1", "gru", 128, 128, 1, bidirectional=True, target=0.6),
    Config("train-lstm-h256-b1", "lstm", 256, 256, 1, task="train", target=0.5),
    # a small model on short windows: the fixed cost of a training call (its
    # Python, the threads' start, the work arrays) is most of its time
    Config("train-lstm-h32-b1", "lstm", 32, 32, 1, T=20, task="train", target=0.5),
    Config("train-gru-h256-b8", "gru", 256, 256, 8, task="train", target=0.5),
    Config("train-lstm-h256-b64", "lstm", 256, 256, 64, task="train", target=0.8),
    Config("train-bilstm-h128-b32", "lstm", 128, 128, 32, T=50, bidirectional=True,
           task="train", target=0.5),
    Config("lstmcell-h128-b1", "lstm", 128, 128, 1, T=1, task="cell", target=0.2),
    Config("lstmcell-h512-b1", "lstm", 512, 512, 1, T=1, task="cell", target=0.6),
    # a layer fed one step at a time with the state of its last call (a
    # streaming loop; issue 12 sets no target: the project's aim, faster)
    Config("lstmstep-h256-b1", "lstm", 256, 256, 1, T=1, task="step"),
    Config("varlen-lstm-h256-b64", "lstm", 256, 256, 64, T=200, task="varlen"),
]

# a configuration outside the table, named as the table names its own:
# [train-][bi]KIND[-iI]-hH-bB[-tT] (I defaults to H, T to 100)
_SPELLED = re.compile(r"(?P<train>train-)?(?P<bi>bi)?(?P<kind>lstm|gru|rnn)(?:-i(?P<I>[1-9]\d*))?"
                      r"-h(?P<H>[1-9]\d*)-b(?P<B>[1-9]\d*)(?:-t(?P<T>[1-9]\d*))?")


def config(name):
    """The configuration called ``name``: one of CONFIGS, or any other shape
    spelled like their names, [train-][bi]KIND[-iI]-hH-bB[-tT] with KIND
    lstm, gru or rnn, I = H and T = 100 unless given ("gru-h64-b1",
    "train-lstm-h128-b8-t20", "lstm-i160-h64-b2"): bench.ab and
    bench.step_trace time shapes outside the comparison table by name.
    None for a name that is neither."""
    for cfg in CONFIGS:
        if cfg.name == name:
            return cfg
    m = _SPELLED.fullmatch(name)
    if m is None:
        return None
    H = int(m["H"])
    return Config(name, m["kind"], int(m["I"] or H), H, int(m["B"]), T=int(m["T"] or 100),
                  bidirectional=m["bi"] is not None,
                  task="train" if m["train"] else "infer")


ENGINES = ["fastrnn", "numpy", "torch", "onnxruntime"]
# the tasks each engine has (the numpy baseline and ONNX Runtime do no training)
TASKS = {"fastrnn": {"infer", "train", "cell", "varlen", "step"}, "numpy": {"infer"},
         "torch": {"infer", "train", "cell", "varlen", "step"},
         "onnxruntime": {"infer", "varlen", "step"}}


def make_layer(cfg):
    cls = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn": fastrnn.RNN}[cfg.kind]
    return cls(cfg.I, cfg.H, bidirectional=cfg.bidirectional, seed=0)


def inputs(cfg):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((cfg.steps, cfg.B, cfg.I)).astype(np.float32)
    lengths = rng.integers(1, cfg.steps + 1, cfg.B) if cfg.task == "varlen" else None
    return x, lengths


# fastrnn's inference-only weight formats (fastrnn.quantize): float32 packed
# once for the kernels, and the reduced ones
WEIGHT_VARIANTS = ("float32", "float16", "bfloat16", "int8")


def fastrnn_engine(cfg, variant=None):
    """variant: "full" (varlen without lengths) or one of WEIGHT_VARIANTS."""
    fastrnn.set_num_threads(THREADS)
    layer = make_layer(cfg)
    x, lengths = inputs(cfg)
    if variant == "full":
        lengths = None
    if variant in WEIGHT_VARIANTS:
        if cfg.task not in ("infer", "cell", "varlen", "step"):
            return None
        layer = fastrnn.quantize(layer, variant)
    if cfg.task == "cell":
        cell = fastrnn.LSTMCell(cfg.I, cfg.H, seed=0)
        if variant in WEIGHT_VARIANTS:
            cell = fastrnn.quantize(cell, variant)
        state = (np.zeros((1, cfg.H), np.float32), np.zeros((1, cfg.H), np.float32))
        return lambda: cell(x[0], state)
    if cfg.task == "train":
        dy = np.ones((cfg.steps, cfg.B, layer.output_size), np.float32)

        def step():
            y, _, ctx = layer.forward(x)
            layer.backward(ctx, dy)
        return step
    if cfg.task == "step":
        return _stepping(lambda state: layer(x, state), layer(x)[1])
    return lambda: layer(x, lengths=lengths)


def numpy_engine_(cfg, variant=None):
    if cfg.task != "infer":
        return None
    sd = make_layer(cfg).state_dict()
    x, _ = inputs(cfg)
    return lambda: numpy_engine.run(cfg.kind, sd, x, 1, cfg.bidirectional)


# PyTorch's quantized settings (torch.ao.quantization.quantize_dynamic), by variant name
TORCH_QUANTIZED = {"qint8": "qint8", "float16": "float16"}


def _torch_quantized(torch, module, variant):
    """PyTorch's dynamic quantization of one LSTM/GRU/LSTMCell (int8 or float16
    weights). quantize_dynamic swaps the children of a module, never the
    module it is given: the module goes in a container and comes out swapped."""
    import warnings
    # (its forward builds quantized tensors, which this PyTorch calls deprecated)
    warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
    box = torch.nn.ModuleList([module])
    box = torch.ao.quantization.quantize_dynamic(box, {type(module)},
                                                 dtype=getattr(torch, TORCH_QUANTIZED[variant]))
    swapped = box[0]
    if type(swapped) is type(module):
        raise RuntimeError(f"quantize_dynamic left {type(module).__name__} as it was")
    return swapped


def torch_engine(cfg, variant=None):
    """variant: "full" (varlen without lengths) or one of TORCH_QUANTIZED."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(THREADS)
    sd = {k: torch.from_numpy(v) for k, v in make_layer(cfg).state_dict().items()}
    x, lengths = inputs(cfg)
    xt = torch.from_numpy(x)
    if cfg.task == "cell":
        cell = torch.nn.LSTMCell(cfg.I, cfg.H)
        cell.load_state_dict({k[:-3]: v for k, v in sd.items()})
        if variant in TORCH_QUANTIZED:
            cell = _torch_quantized(torch, cell, variant)
        state = (torch.zeros(1, cfg.H), torch.zeros(1, cfg.H))

        def step():
            with torch.inference_mode():
                return cell(xt[0], state)
        return step
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.kind]
    module = cls(cfg.I, cfg.H, bidirectional=cfg.bidirectional)
    module.load_state_dict(sd)
    if variant in TORCH_QUANTIZED:
        if cfg.task != "infer" or cfg.kind == "rnn":
            return None
        module = _torch_quantized(torch, module, variant)
    if cfg.task == "step":
        with torch.inference_mode():
            state = module(xt)[1]

        def call(state):
            with torch.inference_mode():
                return module(xt, state)
        return _stepping(call, state)
    if cfg.task == "train":
        dy = torch.ones(cfg.steps, cfg.B, module.hidden_size * (2 if cfg.bidirectional else 1))

        def step():
            module.zero_grad()
            y, _ = module(xt.requires_grad_())
            y.backward(dy)
        return step
    if cfg.task == "varlen" and variant != "full":
        from torch.nn.utils.rnn import pack_padded_sequence
        lt = torch.from_numpy(lengths)

        def run_packed():
            with torch.inference_mode():
                return module(pack_padded_sequence(xt, lt, enforce_sorted=False))
        return run_packed

    def run():
        with torch.inference_mode():
            return module(xt)
    return run


def onnx_engine(cfg, variant=None, spinning=True):
    """ONNX Runtime's operator; spinning=False turns its pool's spinning off
    (session.intra_op.allow_spinning = 0; bench.coexist)."""
    if cfg.task not in ("infer", "varlen", "step"):
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    sd = make_layer(cfg).state_dict()
    x, lengths = inputs(cfg)
    H, D = cfg.H, 2 if cfg.bidirectional else 1
    # PyTorch gate order -> ONNX: GRU [r,z,n] -> [z,r,h]; LSTM [i,f,g,o] -> [i,o,f,c]
    order = {"gru": [1, 0, 2], "lstm": [0, 3, 1, 2], "rnn": [0]}[cfg.kind]

    def reorder(w):
        blocks = np.split(w, len(order), axis=0)
        return np.concatenate([blocks[i] for i in order], axis=0)

    sfx = ["_l0", "_l0_reverse"][:D]
    W = np.stack([reorder(sd["weight_ih" + s]) for s in sfx])
    R = np.stack([reorder(sd["weight_hh" + s]) for s in sfx])
    Bias = np.stack([np.concatenate([reorder(sd["bias_ih" + s]), reorder(sd["bias_hh" + s])])
                     for s in sfx])
    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cfg.kind]
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if cfg.kind == "gru":
        attrs["linear_before_reset"] = 1
    # a step: the state of the last call in (initial_h, initial_c), the new one out
    states = (["initial_h", "initial_c"] if cfg.kind == "lstm" else ["initial_h"]
              ) if cfg.task == "step" else []
    outs = ["Y"] + (["Y_h", "Y_c"][:len(states)] if states else [])
    node = helper.make_node(op, ["X", "W", "R", "B", "seq_lens", *states], outs, **attrs)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel())
             for n, a in (("W", W), ("R", R), ("B", Bias))]
    graph = helper.make_graph(
        [node], "rnn",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape)),
         helper.make_tensor_value_info("seq_lens", TensorProto.INT32, [cfg.B])]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, [D, cfg.B, H]) for n in states],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outs],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    seq = (lengths if lengths is not None and variant != "full"
           else np.full(cfg.B, cfg.steps)).astype(np.int32)
    feed = {"X": x, "seq_lens": seq}
    if states:
        zeros = np.zeros((D, cfg.B, H), np.float32)

        def call(state):
            out = sess.run(None, dict(feed, **dict(zip(states, state))))
            return out[0], tuple(out[1:])
        return _stepping(call, call((zeros,) * len(states))[1])   # (as the others start)
    return lambda: sess.run(None, feed)


def _stepping(call, state):
    """A streaming loop's step: call(state) -> (y, new state), each call
    given the state the last one returned."""
    box = [state]

    def step():
        y, box[0] = call(box[0])
        return y
    return step


FACTORIES = {"fastrnn": fastrnn_engine, "numpy": numpy_engine_, "torch": torch_engine,
             "onnxruntime": onnx_engine}
# engines called by turns with another in one process (bench.coexist): these
# and ONNX Runtime with its pool's spinning off
PEERS = {**FACTORIES, "onnxruntime-nospin": functools.partial(onnx_engine, spinning=False)}
