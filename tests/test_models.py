"""fastrnn.models: each model learns a synthetic task, its gradients match
finite differences, its files round-trip, and bad input is refused."""
import io as _io
import zipfile

import numpy as np
import pytest
from gradcheck import assert_grad_close, numeric_grad

import fastrnn
from fastrnn.data import Vocabulary
from fastrnn.datasets import dna_motif, reversal
from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger
from fastrnn.models import _fit

DNA = Vocabulary("ATCG")


def motif_data(n, seed):
    return dna_motif(n, seed=seed)


def next_symbol_tags(n, seed):
    """Tag at step t = the symbol at t+1 (4 at the last step): needs the reverse direction."""
    rng = np.random.default_rng(seed)
    X = [rng.integers(0, 4, int(rng.integers(5, 30))) for _ in range(n)]
    return X, [np.append(x[1:], 4) for x in X]


def sentences(n, seed):
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(["the cat sat on the mat.", "a dog ran to the park.",
                                "the bird flew over the tree."], n))


# -- each model learns its task --------------------------------------------------------
def test_classifier_finds_a_motif():
    X, y = motif_data(2000, 0)
    Xv, yv = motif_data(400, 1)
    model = SequenceClassifier(vocab=DNA, cell="gru", hidden_size=32, seed=0)
    history = model.fit(X, y, epochs=6, validation_data=(Xv, yv), verbose=False, seed=0)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history["loss"]) == 6
    assert history["loss"][-1] < history["loss"][0]
    assert model.evaluate(Xv, yv)["accuracy"] >= 0.95
    assert model.predict(Xv).shape == (400,)
    proba = model.predict_proba(Xv)
    assert proba.shape == (400, 2) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_bidirectional_tagger_reads_the_next_symbol():
    X, Y = next_symbol_tags(1000, 0)
    Xv, Yv = next_symbol_tags(200, 1)
    model = SequenceTagger(vocab_size=4, num_tags=5, cell="gru", hidden_size=32,
                           bidirectional=True, seed=0)
    model.fit(X, Y, epochs=5, verbose=False, seed=0)
    assert model.evaluate(Xv, Yv)["accuracy"] >= 0.95
    tags = model.predict(Xv)
    assert [len(t) for t in tags] == [len(x) for x in Xv]
    assert np.mean(np.concatenate(tags) == np.concatenate(Yv)) >= 0.95


def test_seq2seq_reverses_sequences():
    X, Y = reversal(3000, seed=0)
    Xv, Yv = reversal(200, seed=1)
    model = Seq2Seq(10, 10, cell="lstm", hidden_size=64, seed=0)
    model.fit(X, Y, epochs=10, verbose=False, seed=0)
    scores = model.evaluate(Xv, Yv)
    assert scores["accuracy"] >= 0.9
    decoded = model.predict(Xv)
    exact = np.mean([np.array_equal(d, t) for d, t in zip(decoded, Yv)])
    assert exact == pytest.approx(scores["exact"])
    assert exact >= 0.7


def test_language_model_learns_and_generates():
    text = sentences(600, 0)
    vocab = Vocabulary.from_text(text)
    model = LanguageModel(vocab, cell="lstm", hidden_size=64, seed=0)
    model.fit(text, seq_len=50, epochs=6, verbose=False, seed=0)
    scores = model.evaluate(sentences(100, 1))
    assert scores["accuracy"] >= 0.85
    assert scores["perplexity"] == pytest.approx(np.exp(scores["loss"]))
    sample = model.generate("the ", 60, temperature=0.5, seed=3)
    assert isinstance(sample, str) and len(sample) == 60 and set(sample) <= set(vocab)
    assert sample == model.generate("the ", 60, temperature=0.5, seed=3)
    # temperature 0 is greedy: each symbol is predict() of what came before
    greedy = model.generate("the c", 5, temperature=0)
    text_so_far = "the c"
    for symbol in greedy:
        assert model.predict(text_so_far) == symbol
        text_so_far += symbol
    assert model.generate("the", 0) == ""


def test_decoding_loops_leave_the_blas_thread_settings_as_they_were():
    from threadpoolctl import threadpool_info
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    LanguageModel("abc", hidden_size=4, seed=0).generate("a", 5)
    Seq2Seq(3, 3, hidden_size=4, seed=0).predict([[0, 1]], max_len=3)
    after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert after == before


def test_generation_samples_softmax_over_temperature():
    """With a head that ignores the state, symbols are drawn with probabilities
    softmax(bias / temperature)."""
    lm = LanguageModel("abc", hidden_size=4, seed=0)
    head = lm.head._params
    head["weight"][...] = 0
    log_p = np.log([0.7, 0.2, 0.1])
    head["bias"][...] = log_p
    for temperature in (1.0, 2.0):
        sample = lm.generate("a", 4000, temperature=temperature, seed=1)
        counts = np.array([sample.count(c) for c in "abc"]) / len(sample)
        expect = np.exp(log_p / temperature) / np.exp(log_p / temperature).sum()
        np.testing.assert_allclose(counts, expect, atol=0.025)
    assert lm.generate("a", 50, temperature=0) == "a" * 50


# -- gradients of the whole model by finite differences (float64) --------------------------
def _check_model_gradients(model, batch):
    model.zero_grad()
    model._train_batch(batch)
    analytic = {k: g.copy() for k, g in model.grads.items()}
    for name, param in model.named_parameters():
        numeric = numeric_grad(lambda: model._score_batch(batch)[0], param)
        assert_grad_close(analytic[name], numeric, name, rtol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_classifier_gradients(cell):
    rng = np.random.default_rng(0)
    model = SequenceClassifier(vocab_size=5, num_classes=3, cell=cell, hidden_size=3,
                               num_layers=2, bidirectional=True, seed=1, dtype=np.float64)
    X = [rng.integers(0, 5, n) for n in (4, 2, 5)]
    y = np.array([0, 2, 1])
    _check_model_gradients(model, model._batches(*model._dataset(X, y), 8)[0])


def test_tagger_gradients_float_input():
    rng = np.random.default_rng(0)
    model = SequenceTagger(input_size=2, num_tags=3, cell="lstm", hidden_size=3,
                           bidirectional=True, seed=1, dtype=np.float64)
    X = [rng.standard_normal((n, 2)) for n in (4, 2, 5)]
    Y = [rng.integers(0, 3, len(x)) for x in X]
    _check_model_gradients(model, model._batches(*model._dataset(X, Y), 8)[0])


@pytest.mark.parametrize("cell,bidirectional", [("lstm", True), ("gru", False)])
def test_seq2seq_gradients(cell, bidirectional):
    rng = np.random.default_rng(0)
    model = Seq2Seq(4, 3, cell=cell, hidden_size=2, num_layers=2, bidirectional=bidirectional,
                    seed=1, dtype=np.float64)
    X = [rng.integers(0, 4, n) for n in (3, 1, 4)]
    Y = [rng.integers(0, 3, n) for n in (2, 0, 3)]
    _check_model_gradients(model, model._batches(*model._dataset(X, Y), 8)[0])


def test_language_model_gradients():
    model = LanguageModel("abc", cell="gru", hidden_size=3, num_layers=2, seed=1,
                          dtype=np.float64)
    windows = model._windows(model._ids("abcabbacab"), 4)
    _check_model_gradients(model, model._batches(windows, 8)[0])


# -- token ids and one-hot rows give the same model ----------------------------------------
def test_token_and_one_hot_inputs_agree():
    X, y = motif_data(20, 2)
    tokens = SequenceClassifier(vocab=DNA, cell="lstm", hidden_size=8, seed=0)
    rows = SequenceClassifier(input_size=4, cell="lstm", hidden_size=8, seed=5)
    rows.load_state_dict(tokens.state_dict())
    one_hot = [DNA.one_hot(s) for s in X]
    np.testing.assert_allclose(tokens.predict_proba(X), rows.predict_proba(one_hot),
                               rtol=1e-5, atol=1e-6)
    ids = [DNA.encode(s) for s in X]
    np.testing.assert_array_equal(tokens.predict_proba(X), tokens.predict_proba(ids))
    # and one training step moves both the same way
    tokens.fit(X, y, epochs=1, batch_size=20, verbose=False, shuffle=False)
    rows.fit(one_hot, y, epochs=1, batch_size=20, verbose=False, shuffle=False)
    for (k, a), (_, b) in zip(tokens.named_parameters(), rows.named_parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=k)


# -- files ---------------------------------------------------------------------------------
def _trained_models():
    X, y = motif_data(60, 3)
    ids = [DNA.encode(s) for s in X]
    clf = SequenceClassifier(vocab=DNA, cell="lstm", hidden_size=8, num_layers=2,
                             bidirectional=True, dropout=0.2, seed=0)
    clf.fit(X, y, epochs=1, verbose=False)
    tagger = SequenceTagger(input_size=4, num_tags=3, cell="rnn", hidden_size=6, seed=0,
                            dtype=np.float64)
    tagger.fit([DNA.one_hot(s) for s in X], [i % 3 for i in ids], epochs=1, verbose=False)
    s2s = Seq2Seq(src_vocab=DNA, tgt_vocab=Vocabulary("xyz"), cell="gru", hidden_size=8,
                  bidirectional=True, seed=0)
    s2s.fit(X[:20], ["xy"[:i % 3] + "z" for i in range(20)], epochs=1, verbose=False)
    lm = LanguageModel(Vocabulary.from_text("hello world", unknown="?"), hidden_size=8, seed=0)
    lm.fit("hello world", seq_len=4, epochs=1, verbose=False)
    return X, [(clf, lambda m: m.predict_proba(X)),
               (tagger, lambda m: m.predict_proba([DNA.one_hot(s) for s in X])),
               (s2s, lambda m: m.predict(X, max_len=5)),
               (lm, lambda m: (m.predict_proba("hello"), m.generate("he", 10, seed=1)))]


def _same(a, b):
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_models_round_trip_through_files(tmp_path):
    _, models = _trained_models()
    for model, outputs in models:
        path = tmp_path / f"{type(model).__name__}.npz"
        model.save(path)
        loaded = fastrnn.load(path)
        assert type(loaded) is type(model)
        assert loaded._config() == model._config()
        for key, arr in model.state_dict().items():
            np.testing.assert_array_equal(loaded.state_dict()[key], arr)
        _same(outputs(model), outputs(loaded))
    clf = fastrnn.load(tmp_path / "SequenceClassifier.npz")
    assert clf.vocab == DNA and clf.dropout == 0.2
    lm = fastrnn.load(tmp_path / "LanguageModel.npz")
    assert lm.vocab.unknown == "?"


def test_corrupt_and_mismatched_model_files_are_refused(tmp_path):
    model = SequenceClassifier(vocab=DNA, hidden_size=4, seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        fastrnn.load(tmp_path / "cut.npz")
    # the same weights under a description with another hidden size
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = str(arrays.pop("__fastrnn__")).replace('"hidden_size": 4', '"hidden_size": 5')
    buf = _io.BytesIO()
    np.savez(buf, __fastrnn__=np.array(header), **arrays)
    (tmp_path / "mismatch.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="mismatch.npz.*shape"):
        fastrnn.load(tmp_path / "mismatch.npz")
    # a vocabulary that is not a vocabulary
    bad = str(header).replace('"hidden_size": 5', '"hidden_size": 4').replace(
        '"symbols": ["A", "T", "C", "G"]', '"symbols": "ATCG"')
    buf = _io.BytesIO()
    np.savez(buf, __fastrnn__=np.array(bad), **arrays)
    (tmp_path / "vocab.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="vocab.npz.*symbols"):
        fastrnn.load(tmp_path / "vocab.npz")
    # a corrupted member
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    raw = bytearray(data)
    at = raw.find(b"head.weight.npy")
    raw[at + 60:at + 90] = b"\x00" * 30
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    assert "head.weight.npy" in names
    with pytest.raises(ValueError, match="flipped.npz"):
        fastrnn.load(tmp_path / "flipped.npz")


def test_unsavable_vocabulary_is_refused_before_writing(tmp_path):
    model = SequenceClassifier(vocab=Vocabulary([(1, 2), (3, 4)]), hidden_size=4)
    with pytest.raises(ValueError, match="vocabulary"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# -- the training loop ------------------------------------------------------------------------
def test_early_stopping_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    X = [rng.integers(0, 4, 10) for _ in range(200)]
    y = rng.integers(0, 2, 200)                   # random labels: validation cannot improve long
    Xv = [rng.integers(0, 4, 10) for _ in range(100)]
    yv = rng.integers(0, 2, 100)
    model = SequenceClassifier(vocab_size=4, cell="gru", hidden_size=32, seed=0)
    history = model.fit(X, y, epochs=40, lr=2e-2, validation_data=(Xv, yv), patience=2,
                        verbose=False, seed=0)
    epochs = len(history["val_loss"])
    assert epochs < 40
    best = int(np.argmin(history["val_loss"]))
    assert best == epochs - 3                     # stopped two epochs without improvement
    assert model.evaluate(Xv, yv)["loss"] == pytest.approx(history["val_loss"][best], rel=1e-6)


def test_a_diverging_loss_stops_training_with_a_warning():
    X, y = motif_data(40, 4)
    model = SequenceClassifier(vocab=DNA, hidden_size=4, seed=0)
    model.head._params["weight"][0, 0] = np.inf          # the loss is no longer finite
    with pytest.warns(RuntimeWarning, match="training stopped at epoch 1: the loss is"), \
            np.errstate(invalid="ignore"):
        history = model.fit(X, y, epochs=3, validation_data=(X, y), verbose=False)
    assert {len(v) for v in history.values()} == {1}
    assert all(np.isnan(v[0]) for v in history.values())


def test_progress_lines_and_silence(capsys, monkeypatch):
    X, y = motif_data(40, 4)
    model = SequenceClassifier(vocab=DNA, hidden_size=4, seed=0)
    model.fit(X, y, epochs=2, verbose=False)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(_fit, "_tqdm", lambda: None)
    model.fit(X, y, epochs=2, validation_data=(X, y))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2")
    assert "loss" in lines[0] and "val_accuracy" in lines[0]


def test_progress_uses_tqdm_when_installed(monkeypatch):
    made = []

    class FakeBar:
        def __init__(self, total, desc, **kwargs):
            self.total, self.desc, self.updates, self.closed = total, desc, 0, False
            made.append(self)

        def update(self, n):
            self.updates += n

        def set_postfix(self, **kwargs):
            pass

        def set_postfix_str(self, text, refresh=True):
            self.summary = text

        def close(self):
            self.closed = True

    monkeypatch.setattr(_fit, "_tqdm", lambda: FakeBar)
    X, y = motif_data(40, 4)
    SequenceClassifier(vocab=DNA, hidden_size=4, seed=0).fit(X, y, epochs=2, batch_size=16)
    assert [b.desc for b in made] == ["epoch 1/2", "epoch 2/2"]
    assert all(b.total == 3 and b.updates == 3 and b.closed for b in made)
    assert "accuracy" in made[-1].summary


def test_clipping_and_optimizer_choice():
    X, y = motif_data(40, 4)
    model = SequenceClassifier(vocab=DNA, hidden_size=4, seed=0)
    before = model.state_dict()
    model.fit(X, y, epochs=1, batch_size=40, optimizer="sgd", lr=1.0, clip_norm=1e-3,
              shuffle=False, verbose=False)
    step = np.sqrt(sum(np.sum((model.state_dict()[k] - v) ** 2) for k, v in before.items()))
    assert step == pytest.approx(1e-3, rel=1e-3)     # one SGD step of a gradient clipped to 1e-3
    opt = fastrnn.optim.SGD(model, lr=0.1)
    model.fit(X, y, epochs=1, optimizer=opt, verbose=False)


def test_dropout_trains_and_inference_is_deterministic():
    X, y = motif_data(100, 5)
    model = SequenceClassifier(vocab=DNA, hidden_size=8, num_layers=2, dropout=0.5, seed=0)
    model.fit(X, y, epochs=2, verbose=False)
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X))


def test_caller_data_is_not_modified():
    X, y = motif_data(30, 6)
    ids = [DNA.encode(s) for s in X]
    saved = [a.copy() for a in ids], y.copy()
    SequenceClassifier(vocab=DNA, hidden_size=4, seed=0).fit(ids, y, epochs=1, verbose=False)
    assert all(np.array_equal(a, b) for a, b in zip(ids, saved[0]))
    np.testing.assert_array_equal(y, saved[1])


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(), ValueError, "exactly one of vocab_size"),
    (dict(vocab_size=4, input_size=3), ValueError, "exactly one"),
    (dict(vocab_size=4, cell="transformer"), ValueError, "cell"),
    (dict(vocab_size=4, num_classes=1), ValueError, "num_classes"),
    (dict(vocab_size=4, hidden_size=0), ValueError, "hidden_size"),
    (dict(vocab_size=4, dropout=1.0), ValueError, "dropout"),
    (dict(vocab_size=5, vocab=DNA), ValueError, "vocab_size"),
    (dict(vocab=3), TypeError, "vocab"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SequenceClassifier(**kwargs)


@pytest.mark.parametrize("args,kwargs,error,match", [
    (("ACGT", [0]), {}, TypeError, "X must be a list"),
    ((["AC", "GT"], [0]), {}, ValueError, "one class id per sequence"),
    ((["AC", "GT"], [0, 2]), {}, ValueError, r"y must be in \[0, 2\)"),
    ((["AC", "GX"], [0, 1]), {}, ValueError, "'X'"),
    ((["AC", ""], [0, 1]), {}, ValueError, r"X\[1\] is empty"),
    ((["AC", "GT"], [0, 1]), dict(epochs=0), ValueError, "epochs"),
    ((["AC", "GT"], [0, 1]), dict(lr=-1), ValueError, "lr"),
    ((["AC", "GT"], [0, 1]), dict(clip_norm=0), ValueError, "clip_norm"),
    ((["AC", "GT"], [0, 1]), dict(patience=2), ValueError, "validation_data"),
    ((["AC", "GT"], [0, 1]), dict(validation_data=["AC"]), TypeError, "validation_data"),
    ((["AC", "GT"], [0, 1]), dict(optimizer="rmsprop"), ValueError, "optimizer"),
    ((["AC", "GT"], [0, 1]), dict(verbose="yes"), TypeError, "verbose"),
])
def test_bad_fit_arguments(args, kwargs, error, match):
    model = SequenceClassifier(vocab=DNA, hidden_size=4, seed=0)
    before = model.state_dict()
    with pytest.raises(error, match=match):
        model.fit(*args, **kwargs, verbose=kwargs.pop("verbose", False))
    for key, arr in model.state_dict().items():
        np.testing.assert_array_equal(arr, before[key])


def test_bad_inputs_of_the_other_models():
    tagger = SequenceTagger(input_size=2, num_tags=3, hidden_size=4)
    with pytest.raises(ValueError, match=r"X\[0\] must be \(steps, input_size=2\)"):
        tagger.predict([np.zeros((3, 4))])
    with pytest.raises(ValueError, match=r"y\[0\] must hold one tag per step \(3\)"):
        tagger.fit([np.zeros((3, 2))], [[0, 1]], verbose=False)
    s2s = Seq2Seq(4, 3, hidden_size=4)
    with pytest.raises(ValueError, match="one target per source"):
        s2s.fit([[0, 1]], [[0], [1]], verbose=False)
    with pytest.raises(ValueError, match=r"y\[0\] must be in \[0, 3\)"):
        s2s.fit([[0, 1]], [[3]], verbose=False)
    with pytest.raises(ValueError, match="max_len"):
        s2s.predict([[0, 1]], max_len=0)
    lm = LanguageModel("ab", hidden_size=4)
    with pytest.raises(ValueError, match="'c'"):
        lm.fit("abcab", verbose=False)
    with pytest.raises(ValueError, match="text must hold at least 2"):
        lm.fit("a", verbose=False)
    with pytest.raises(ValueError, match="prefix must hold at least 1"):
        lm.generate("", 5)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate("a", 5, temperature=-1)
    with pytest.raises(TypeError, match="vocab"):
        LanguageModel(None)
