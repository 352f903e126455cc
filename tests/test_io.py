"""Model files: round trips, and refusals of corrupt or mismatched files."""
import json
import zipfile

import numpy as np
import pytest

import fastrnn

MODULES = [
    lambda: fastrnn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=1),
    lambda: fastrnn.GRU(3, 4, reset_after=False, bias=False, dtype=np.float64, seed=2),
    lambda: fastrnn.RNN(3, 4, nonlinearity="relu", seed=3),
    lambda: fastrnn.Stacked([fastrnn.GRU(3, 4, seed=4), fastrnn.LSTM(4, 2, seed=5)],
                            dropout=0.25),
    lambda: fastrnn.Bidirectional(fastrnn.LSTM(3, 4, seed=6), merge="sum", seed=7),
]
IDS = ["lstm", "gru", "rnn", "stacked", "bidirectional"]


@pytest.mark.parametrize("make", MODULES, ids=IDS)
def test_round_trip_gives_identical_outputs(make, tmp_path):
    module = make()
    path = tmp_path / "model.npz"
    assert module.save(path) == path
    loaded = fastrnn.load(path)
    assert type(loaded) is type(module) and repr(loaded) == repr(module)
    x = np.random.default_rng(0).standard_normal((2, 5, 3) if module.batch_first
                                                 else (5, 2, 3)).astype(module.dtype)
    y, _ = module(x, lengths=[5, 3])
    y2, _ = loaded(x, lengths=[5, 3])
    np.testing.assert_array_equal(y, y2)
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


@pytest.mark.parametrize("make", [lambda: fastrnn.LSTMCell(3, 4, seed=1),
                                  lambda: fastrnn.GRUCell(3, 4, reset_after=False, seed=1),
                                  lambda: fastrnn.RNNCell(3, 4, nonlinearity="relu", seed=1),
                                  lambda: fastrnn.Dense(3, 2, activation="tanh", seed=1),
                                  lambda: fastrnn.Embedding(5, 3, seed=1)],
                         ids=["lstmcell", "grucell", "rnncell", "dense", "embedding"])
def test_round_trip_of_cells_and_linear_modules(make, tmp_path):
    module = make()
    module.save(tmp_path / "m.npz")
    loaded = fastrnn.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(module)
    x = np.arange(3) % 5 if isinstance(module, fastrnn.Embedding) else np.ones((2, 3), np.float32)
    out, out2 = module(x), loaded(x)
    for a, b in zip(out if isinstance(out, tuple) else (out,),
                    out2 if isinstance(out2, tuple) else (out2,)):
        np.testing.assert_array_equal(a, b)


def _rewrite(path, change):
    """Load an .npz as a dict, change it, write it back (no pickle either way)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_corrupt_and_mismatched_files_are_refused(tmp_path):
    path = tmp_path / "model.npz"
    fastrnn.GRU(3, 4, seed=0).save(path)
    data = path.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz: not a readable fastrnn model file"):
        fastrnn.load(truncated)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"garbage.npz: not a fastrnn model file \(not an .npz"):
        fastrnn.load(garbage)

    pickled = tmp_path / "pickled.npz"
    with open(pickled, "wb") as f:
        np.savez(f, __fastrnn__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable fastrnn model file"):
        fastrnn.load(pickled)

    for short in (b"", b"PK"):
        (tmp_path / "short.npz").write_bytes(short)
        with pytest.raises(ValueError, match="short.npz: not a"):
            fastrnn.load(tmp_path / "short.npz")

    plain = tmp_path / "plain.npz"
    np.savez(plain, weight=np.ones(3))
    with pytest.raises(ValueError, match="no __fastrnn__ header"):
        fastrnn.load(plain)

    def bad_shape(arrays):
        arrays["weight_hh_l0"] = np.ones((12, 5), np.float32)
    _rewrite(path, bad_shape)
    with pytest.raises(ValueError, match=r"model.npz: state_dict\['weight_hh_l0'\] must have "
                                         r"shape \(12, 4\)"):
        fastrnn.load(path)

    fastrnn.GRU(3, 4, seed=0).save(path)

    def missing(arrays):
        del arrays["bias_hh_l0"]
    _rewrite(path, missing)
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l0'\]"):
        fastrnn.load(path)

    fastrnn.GRU(3, 4, seed=0).save(path)

    def bad_header(arrays):
        meta = json.loads(str(arrays["__fastrnn__"]))
        meta["module"]["hidden_size"] = -4
        arrays["__fastrnn__"] = np.array(json.dumps(meta))
    _rewrite(path, bad_header)
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        fastrnn.load(path)

    def unknown_type(arrays):
        arrays["__fastrnn__"] = np.array(json.dumps(
            {"format": "fastrnn-module", "version": 1, "module": {"type": "Transformer"}}))
    _rewrite(path, unknown_type)
    with pytest.raises(ValueError, match="unknown module type 'Transformer'"):
        fastrnn.load(path)

    with pytest.raises(FileNotFoundError):
        fastrnn.load(tmp_path / "absent.npz")
    with pytest.raises(TypeError, match="path must be a file path"):
        fastrnn.load(42)
    assert zipfile.is_zipfile(path)


def test_declared_weights_match_what_each_module_builds():
    """fastrnn.load compares a file with the weights its description declares
    before it builds anything: for every module type, what the description
    declares is exactly what the module it builds has."""
    from fastrnn import _registry
    from fastrnn.data import Vocabulary
    from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger
    modules = [make() for make in MODULES] + [
        fastrnn.LSTM(3, 5, num_layers=3, bias=False, bidirectional=True),
        fastrnn.RNNCell(2, 3, bias=False), fastrnn.GRUCell(2, 3), fastrnn.LSTMCell(4, 2),
        fastrnn.Dense(3, 2, bias=False), fastrnn.Embedding(6, 2, dtype=np.float64),
        fastrnn.Sequential([fastrnn.Embedding(6, 3), fastrnn.GRU(3, 2, num_layers=2),
                            fastrnn.Dense(2, 4, activation="relu")]),
        fastrnn.FinalState(fastrnn.Bidirectional(fastrnn.LSTM(3, 2, num_layers=2))),
        fastrnn.Stacked([fastrnn.Bidirectional(fastrnn.Stacked([fastrnn.GRU(2, 3),
                                                                fastrnn.RNN(3, 2)])),
                         fastrnn.LSTM(4, 2)]),
        SequenceClassifier(vocab_size=7, hidden_size=3, num_layers=2, bidirectional=True),
        SequenceClassifier(input_size=3, hidden_size=2, cell="rnn", dtype=np.float64),
        SequenceTagger(vocab=Vocabulary("abc", unknown="?"), num_tags=4, cell="gru",
                       hidden_size=3),
        Seq2Seq(5, 6, hidden_size=3, num_layers=2, bidirectional=True),
        Seq2Seq(src_vocab=Vocabulary("xy"), tgt_vocab=Vocabulary("pqr"), hidden_size=2),
        LanguageModel("abcd", cell="gru", hidden_size=3, num_layers=2)]
    assert {type(m).__name__ for m in modules} == set(_registry.TYPES)
    for module in modules:
        declared = _registry.weight_shapes(_registry.describe(module))
        built = {k: (v.shape, v.dtype.type) for k, v in module.state_dict().items()}
        assert declared == built, type(module).__name__
        assert list(declared) == list(built), type(module).__name__
