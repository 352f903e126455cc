"""Copies stay live (hostile use, issue 10.3): after copy.deepcopy or a pickle
round trip, a module or model is fully independent and fully working:
outputs, load_state_dict, gradients, optimizer steps and fit all act on the
arrays the copy's kernels read, and never on the original's.
"""
import textwrap

import pytest

from isolated import run_isolated

COMMON = """
import copy, pickle
from fastrnn import optim
from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger

rng = np.random.default_rng(0)
COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda m: pickle.loads(pickle.dumps(m))}

def outputs(out):
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in outputs(o)]
    return [np.asarray(out)]

def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(outputs(a), outputs(b)))

def randomize(module, seed):
    r = np.random.default_rng(seed)
    return {k: r.standard_normal(v.shape).astype(v.dtype) * 0.3
            for k, v in module.state_dict().items()}

def check(make, run, train):
    '''run(m) -> outputs; train(m) adds gradients into m.grads (or fits m).'''
    for how, copier in COPIES.items():
        original = make()
        base = run(original)
        twin = copier(original)
        assert same(run(twin), base), (how, "copy computes differently")
        # load_state_dict reaches the copy's kernels, not the original's
        weights = randomize(twin, 1)
        twin.load_state_dict(weights)
        fresh = make()
        fresh.load_state_dict(weights)
        assert same(run(twin), run(fresh)), (how, "load_state_dict not seen by the copy")
        assert same(run(original), base), (how, "load_state_dict changed the original")
        # gradients land in the copy's grads; an optimizer step moves its outputs
        twin.zero_grad()
        original.zero_grad()
        train(twin)
        assert any(np.abs(g).max() > 0 for g in twin.grads.values()), how
        assert all(not np.any(g) for g in original.grads.values()), how
        before = run(twin)
        optim.SGD(twin, lr=0.5).step()
        assert not same(run(twin), before), (how, "optimizer step not seen by the copy")
        assert same(run(original), base), (how, "optimizer step changed the original")
        # a model and its optimizer copied together stay connected
        pair = copier((original, optim.Adam(original, lr=0.1)))
        m2, opt2 = pair
        m2.zero_grad()
        train(m2)
        opt2.step()
        assert not same(run(m2), base), (how, "copied optimizer does not reach copied model")
        assert same(run(original), base), how
        # a copy of a copy
        assert same(run(copier(twin)), run(twin)), how
        print(how, "ok")
"""

LAYER = """
x = rng.standard_normal((5, 3, 4)).astype(np.float32)

def run(m):
    return m(x)

def train(m):
    y, h, ctx = m.forward(x)
    m.backward(ctx, np.ones_like(y))
"""

CASES = {
    "lstm": LAYER + "check(lambda: fastrnn.LSTM(4, 3, num_layers=2, bidirectional=True, "
                    "seed=0), run, train)",
    "gru": LAYER + "check(lambda: fastrnn.GRU(4, 3, reset_after=False, seed=0), run, train)",
    "rnn": LAYER + "check(lambda: fastrnn.RNN(4, 3, num_layers=2, seed=0), run, train)",
    "stacked": LAYER + "check(lambda: fastrnn.Stacked([fastrnn.GRU(4, 3, seed=0), "
                       "fastrnn.LSTM(3, 2, seed=1)]), run, train)",
    "bidirectional": LAYER + "check(lambda: fastrnn.Bidirectional(fastrnn.LSTM(4, 3, seed=0), "
                             "seed=1), run, train)",
    "cells": """
        x = rng.standard_normal((3, 4)).astype(np.float32)
        def run(m):
            return m(x)
        def train(m):
            out, ctx = m.forward(x)
            m.backward(ctx, tuple(np.ones_like(o) for o in out) if isinstance(out, tuple)
                       else np.ones_like(out))
        for cls in (fastrnn.RNNCell, fastrnn.GRUCell, fastrnn.LSTMCell):
            check(lambda: cls(4, 3, seed=0), run, train)
    """,
    "dense-embedding": """
        x = rng.standard_normal((3, 4)).astype(np.float32)
        ids = np.array([[0, 2], [1, 1]])
        def train_dense(m):
            y, ctx = m.forward(x)
            m.backward(ctx, np.ones_like(y))
        def train_embedding(m):
            y, ctx = m.forward(ids)
            m.backward(ctx, np.ones_like(y))
        check(lambda: fastrnn.Dense(4, 2, activation="tanh", seed=0), lambda m: m(x), train_dense)
        check(lambda: fastrnn.Embedding(3, 2, seed=0), lambda m: m(ids), train_embedding)
    """,
    "models": """
        X = [rng.integers(0, 4, n) for n in (3, 5, 2, 4)]
        y = np.array([0, 1, 1, 0])
        tags = [rng.integers(0, 3, len(s)) for s in X]
        def fit(data):
            def train(m):
                m.fit(X, data, epochs=1, batch_size=2, verbose=False, seed=0)
                # fit clears the grads at its end: leave one batch's in them
                m._train_batch(next(iter(m._batches(*m._dataset(X, data), 4))))
            return train
        check(lambda: SequenceClassifier(vocab_size=4, hidden_size=5, bidirectional=True,
                                         seed=0), lambda m: m.predict_proba(X), fit(y))
        check(lambda: SequenceTagger(vocab_size=4, num_tags=3, hidden_size=5, cell="gru",
                                     seed=0), lambda m: m.predict_proba(X), fit(tags))
        check(lambda: Seq2Seq(4, 3, hidden_size=5, seed=0),
              lambda m: [m.head(m.decoder(np.zeros((2, 1), np.intp))[0])], fit(tags))
        text = "abcabcabdabcabc" * 3
        def fit_lm(m):
            m.fit(text, seq_len=5, epochs=1, verbose=False, seed=0)
            m._train_batch(m._batches(m._windows(m._ids(text), 5), 4)[0])
        check(lambda: LanguageModel("abcd", hidden_size=5, seed=0),
              lambda m: m.predict_proba("abc"), fit_lm)
    """,
}


@pytest.mark.parametrize("case", list(CASES))
def test_copies_are_independent_and_working(case):
    out = run_isolated(COMMON + textwrap.dedent(CASES[case])).stdout
    assert out.count("deepcopy ok") >= 1 and out.count("pickle ok") >= 1, out


def test_a_copied_classifier_trains_every_part():
    """The report: fit on a deep copy trained only its head."""
    run_isolated("""
import copy
from fastrnn.models import SequenceClassifier
rng = np.random.default_rng(0)
X = [rng.integers(0, 4, 6) for _ in range(16)]
y = rng.integers(0, 2, 16)
model = copy.deepcopy(SequenceClassifier(vocab_size=4, hidden_size=6, seed=0))
before = model.state_dict()
model.fit(X, y, epochs=2, batch_size=4, verbose=False, seed=0)
after = model.state_dict()
unchanged = [k for k in before if np.array_equal(before[k], after[k])]
assert not unchanged, unchanged
reference = SequenceClassifier(vocab_size=4, hidden_size=6, seed=0)
reference.fit(X, y, epochs=2, batch_size=4, verbose=False, seed=0)
assert all(np.array_equal(reference.state_dict()[k], after[k]) for k in after)
""")
