"""The four ready-made models, trained in fastrnn, exported to ONNX: ONNX Runtime
gives their predictions (skipped without onnx / onnxruntime)."""
import numpy as np
import pytest

import fastrnn
from fastrnn.data import pad_sequences
from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import fastrnn.onnx  # noqa: E402
from onnx_helpers import close, session  # noqa: E402





def _token_data(rng, n=24, vocab=6):
    X = [rng.integers(0, vocab, int(rng.integers(2, 9))) for _ in range(n)]
    return X


@pytest.mark.parametrize("cell,bidir,layers", [("lstm", True, 2), ("gru", False, 1),
                                               ("rnn", True, 1)])
def test_classifier_and_tagger(tmp_path, cell, bidir, layers):
    rng = np.random.default_rng(0)
    X = _token_data(rng)
    y = np.array([int(x.sum() % 3) for x in X])
    tags = [x % 2 for x in X]
    clf = SequenceClassifier(vocab_size=6, num_classes=3, cell=cell, hidden_size=8,
                             num_layers=layers, bidirectional=bidir, seed=1)
    clf.fit(X, y, epochs=2, batch_size=8, verbose=False)
    tagger = SequenceTagger(vocab_size=6, num_tags=2, cell=cell, hidden_size=8,
                            num_layers=layers, bidirectional=bidir, seed=2)
    tagger.fit(X, tags, epochs=2, batch_size=8, verbose=False)
    ids, lengths = pad_sequences(X)
    feed = {"input": ids.astype(np.int64), "lengths": lengths.astype(np.int32)}
    got = session(fastrnn.onnx.export(clf, tmp_path / "clf.onnx")).run(None, feed)
    close(got[1], clf.predict_proba(X), "classifier probabilities")
    np.testing.assert_array_equal(got[0].argmax(axis=1), clf.predict(X))
    got = session(fastrnn.onnx.export(tagger, tmp_path / "tag.onnx")).run(None, feed)
    for b, (probs, n) in enumerate(zip(tagger.predict_proba(X), lengths)):
        close(got[1][b, :n], probs, f"tagger probabilities {b}")


def test_classifier_on_float_features(tmp_path):
    rng = np.random.default_rng(1)
    X = [rng.standard_normal((int(rng.integers(1, 7)), 3)).astype(np.float32)
         for _ in range(10)]
    clf = SequenceClassifier(input_size=3, num_classes=2, cell="gru", hidden_size=5, seed=3)
    clf.fit(X, rng.integers(0, 2, 10), epochs=1, verbose=False)
    lengths = np.array([len(x) for x in X])
    padded = np.zeros((10, lengths.max(), 3), np.float32)
    for b, x in enumerate(X):
        padded[b, :len(x)] = x
    got = session(fastrnn.onnx.export(clf, tmp_path / "f.onnx")).run(
        None, {"input": padded, "lengths": lengths.astype(np.int32)})
    close(got[1], clf.predict_proba(X), "probabilities")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_generates_the_same_text(tmp_path, cell):
    text = "abcabd" * 20
    lm = LanguageModel(fastrnn.data.Vocabulary.from_text(text), cell=cell, hidden_size=12,
                       num_layers=2, seed=4)
    lm.fit(text, seq_len=10, epochs=2, verbose=False)
    sess = session(fastrnn.onnx.export(lm, tmp_path / "lm.onnx"))
    prefix = lm.vocab.encode("abca")[None].astype(np.int64)
    names = [i.name for i in sess.get_inputs()][1:]
    zeros = {n: np.zeros((2, 1, 12), np.float32) for n in names}
    out = sess.run(None, {"input": prefix, **zeros})
    close(out[1][0, -1], lm.predict_proba("abca"), "next-symbol probabilities")
    # greedy generation through ONNX Runtime, one step at a time with the states
    ids = []
    for _ in range(8):
        nxt = int(out[0][0, -1].argmax())
        ids.append(nxt)
        states = dict(zip(names, out[2:]))
        out = sess.run(None, {"input": np.array([[nxt]], np.int64), **states})
    assert lm.vocab.decode(ids) == lm.generate("abca", 8, temperature=0)


@pytest.mark.parametrize("cell,bidir", [("lstm", True), ("gru", False)])
def test_seq2seq_greedy_decoding(tmp_path, cell, bidir):
    rng = np.random.default_rng(5)
    X = _token_data(rng, 16, 5)
    Y = [x[::-1] % 4 for x in X]
    model = Seq2Seq(5, 4, cell=cell, hidden_size=6, num_layers=2, bidirectional=bidir, seed=6)
    model.fit(X, Y, epochs=2, batch_size=8, verbose=False)
    sess = session(fastrnn.onnx.export(model, tmp_path / "s2s.onnx"))
    src, lengths = pad_sequences(X)
    dec = np.full((len(X), 1), model.start, np.int64)
    done = np.zeros(len(X), bool)
    for _ in range(10):
        logits = sess.run(None, {"source": src.astype(np.int64),
                                 "source_lengths": lengths.astype(np.int32),
                                 "decoder_input": dec})[0]
        best = logits[:, -1].argmax(axis=1)
        done |= best == model.end
        dec = np.concatenate([dec, best[:, None]], axis=1)
    decoded = []
    for row in dec[:, 1:]:
        stop = np.flatnonzero(row == model.end)
        decoded.append(row[:stop[0]] if len(stop) else row)
    for ours, theirs in zip(model.predict(X, max_len=10), decoded, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_model_export_options_refused(tmp_path):
    clf = SequenceClassifier(vocab_size=4, hidden_size=3, seed=0)
    with pytest.raises(ValueError, match="lengths / initial_state are for layers"):
        fastrnn.onnx.export(clf, tmp_path / "x.onnx", lengths=True)
