"""Numbers that hide failure and errors that must name their argument
(hostile input, issue 10.6 and 10.7), each case in its own process."""
import subprocess
import sys
import textwrap
import time

import pytest

from isolated import run_isolated

CASES = {
    "generate-tiny-and-huge-temperature": """
        from fastrnn.models import LanguageModel
        lm = LanguageModel("abcdefgh", hidden_size=8, seed=0)
        greedy = lm.generate("ab", 30, temperature=0)
        for t in (1e-310, 5e-324, 1e-30):
            assert lm.generate("ab", 30, temperature=t, seed=1) == greedy, t
        text = lm.generate("ab", 30, temperature=1e300, seed=1)     # ~uniform, still symbols
        assert len(text) == 30 and set(text) <= set("abcdefgh"), text
    """,
    "nan-weights-refused": """
        from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger
        def poisoned(model, key):
            dict(model.named_parameters())[key][...] = np.nan
            return model
        def refused(call):
            try:
                call()
            except ValueError as exc:
                assert "not finite" in str(exc), exc
            else:
                raise AssertionError("answered from NaN weights")
        lm = poisoned(LanguageModel("abc", hidden_size=4, seed=0), "rnn.weight_hh_l0")
        refused(lambda: lm.generate("ab", 5))
        refused(lambda: lm.generate("ab", 5, temperature=0))
        refused(lambda: lm.predict("ab"))
        X = [np.array([0, 1, 2]), np.array([1])]
        clf = poisoned(SequenceClassifier(vocab_size=3, hidden_size=4, seed=0), "head.bias")
        refused(lambda: clf.predict(X))
        tag = poisoned(SequenceTagger(vocab_size=3, num_tags=2, hidden_size=4, seed=0),
                       "rnn.bias_ih_l0")
        refused(lambda: tag.predict(X))
        s2s = poisoned(Seq2Seq(3, 3, hidden_size=4, seed=0), "decoder.weight_hh_l0")
        refused(lambda: s2s.predict(X, max_len=4))
        # float input with NaN: named too
        feat = SequenceClassifier(input_size=2, hidden_size=4, seed=0)
        bad = [np.array([[0.0, np.nan]])]
        try:
            feat.predict(bad)
        except ValueError as exc:
            assert "X" in str(exc), exc
        else:
            raise AssertionError
    """,
    "masked-steps-never-leak": """
        from fastrnn import losses
        rng = np.random.default_rng(0)
        lengths = np.array([4, 2, 3])
        logits = rng.standard_normal((4, 3, 5))
        targets = rng.integers(0, 5, (4, 3))
        valid = np.arange(4)[:, None] < lengths[None, :]
        poisoned = logits.copy()
        poisoned[~valid] = np.nan
        poisoned[3, 1, 0] = np.inf
        for batch_first in (False, True):
            tr = (lambda a: a.swapaxes(0, 1)) if batch_first else (lambda a: a)
            clean, dclean = losses.softmax_cross_entropy(tr(logits), tr(targets), lengths=lengths,
                                                         batch_first=batch_first)
            loss, grad = losses.softmax_cross_entropy(tr(poisoned), tr(targets), lengths=lengths,
                                                      batch_first=batch_first)
            assert np.isfinite(loss) and loss == clean, (loss, clean)
            assert np.array_equal(grad, dclean) and not np.any(tr(grad)[~valid])
            p = tr(poisoned[..., :2]).copy()
            y = np.zeros_like(p)
            ref = tr(logits[..., :2])
            loss, grad = losses.mse(p, y, lengths=lengths, batch_first=batch_first)
            clean, dclean = losses.mse(ref, y, lengths=lengths, batch_first=batch_first)
            assert loss == clean and np.array_equal(grad, dclean), (loss, clean)
    """,
    "load-state-dict-from-own-arrays": """
        for make in (lambda: fastrnn.GRU(4, 4, num_layers=2, bidirectional=True, seed=0),
                     lambda: fastrnn.LSTMCell(4, 4, seed=0),
                     lambda: fastrnn.Dense(3, 3, seed=0)):
            m = make()
            before = m.state_dict()
            live = dict(m.named_parameters())
            keys = list(live)
            # every entry takes another entry's live array of the same shape (a rotation)
            groups = {}
            for k in keys:
                groups.setdefault(live[k].shape, []).append(k)
            swap = {}
            for ks in groups.values():
                for a, b in zip(ks, ks[1:] + ks[:1]):
                    swap[a] = live[b]
            # and one entry its own array read backwards (overlaps itself)
            first = keys[0]
            swap[first] = live[first][::-1]
            m.load_state_dict(swap)
            got = m.state_dict()
            for ks in groups.values():
                for a, b in zip(ks, ks[1:] + ks[:1]):
                    if a != first:
                        assert np.array_equal(got[a], before[b]), (a, b)
            assert np.array_equal(got[first], before[first][::-1])
            # a failed load (one bad shape at the end) changes nothing
            bad = dict(m.state_dict())
            bad[keys[-1]] = np.zeros((1, 1))
            try:
                m.load_state_dict(bad)
            except ValueError:
                pass
            assert all(np.array_equal(m.state_dict()[k], got[k]) for k in keys)
    """,
    "seeds-are-named": """
        from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger
        from fastrnn.data import batches
        from fastrnn.datasets import dna_motif
        makers = [lambda s: fastrnn.LSTM(3, 4, seed=s), lambda s: fastrnn.GRUCell(3, 4, seed=s),
                  lambda s: fastrnn.Dense(3, 4, seed=s), lambda s: fastrnn.Embedding(3, 4, seed=s),
                  lambda s: fastrnn.Stacked([fastrnn.GRU(3, 3)], seed=s),
                  lambda s: fastrnn.Bidirectional(fastrnn.GRU(3, 3), seed=s),
                  lambda s: SequenceClassifier(vocab_size=3, seed=s),
                  lambda s: SequenceTagger(vocab_size=3, seed=s),
                  lambda s: Seq2Seq(3, 3, seed=s), lambda s: LanguageModel("ab", seed=s),
                  lambda s: fastrnn.LSTM(3, 4).reset_parameters(s),
                  lambda s: list(batches([[1], [2]], seed=s)),
                  lambda s: dna_motif(4, seed=s),
                  lambda s: LanguageModel("ab", hidden_size=3).generate("a", 2, seed=s),
                  lambda s: SequenceClassifier(vocab_size=3, hidden_size=3).fit(
                      [[0, 1]], [1], epochs=1, verbose=False, seed=s)]
        for i, make in enumerate(makers):
            for bad, exc in ((-1, ValueError), (-2**70, ValueError), (1.5, TypeError)):
                try:
                    make(bad)
                except exc as e:
                    assert "seed" in str(e), (i, bad, e)
                else:
                    raise AssertionError((i, bad))
    """,
    "huge-counts-allocate-nothing-up-front": """
        from fastrnn.models import Seq2Seq
        m = Seq2Seq(3, 3, hidden_size=4, seed=0)
        dict(m.head.named_parameters())["bias"][m.end] = 100.0      # <end> first, every time
        assert [len(p) for p in m.predict([[1], [2, 1]], max_len=10**12)] == [0, 0]
        from fastrnn import optim
        g = fastrnn.GRU(2, 2)
        for kwargs, exc, name in ((dict(lr="x"), TypeError, "lr"), (dict(betas=0.9), TypeError, "betas"),
                                  (dict(betas=(0.9,)), TypeError, "betas"),
                                  (dict(eps=None), TypeError, "eps")):
            try:
                optim.Adam(g, **kwargs)
            except exc as e:
                assert name in str(e), e
            else:
                raise AssertionError(kwargs)
    """,
    "empty-seq2seq-target": """
        from fastrnn.models import Seq2Seq
        m = Seq2Seq(5, 4, hidden_size=8, seed=0)
        history = m.fit([[1, 2], [3]], [[], [1]], epochs=2, verbose=False, seed=0)
        assert all(np.isfinite(history["loss"]))
        assert all(len(p) <= 3 for p in m.predict([[1, 2], [3]], max_len=3))
        m.evaluate([[1, 2]], [[]])
    """,
    "sizes-bounded": """
        for make, name in ((lambda: fastrnn.LSTM(3, 10**12), "hidden_size"),
                           (lambda: fastrnn.GRU(2**31, 3), "input_size"),
                           (lambda: fastrnn.Dense(3, 2**40), "out_features"),
                           (lambda: fastrnn.Embedding(2**31, 2), "num_embeddings")):
            try:
                make()
            except ValueError as exc:
                assert name in str(exc), exc
            else:
                raise AssertionError(name)
    """,
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_values(case):
    run_isolated(textwrap.dedent(CASES[case]), timeout=120)


# -- the command line: one line, no traceback, before any work ------------------------
def cli(*args, cwd=None):
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    return subprocess.run([sys.executable, "-m", "fastrnn", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, preexec_fn=limit)


def one_line_error(result, code, *words):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "text.txt").write_text("the cat sat on the mat. " * 30)
    import fastrnn
    fastrnn.models.LanguageModel("the casonm.", hidden_size=4, seed=0).save(folder / "lm.npz")
    return folder


def test_cli_refuses_bad_numbers_in_one_line(corpus):
    one_line_error(cli("generate", corpus / "lm.npz", "--seed", -1), 2, "--seed", ">= 0")
    one_line_error(cli("train", corpus / "text.txt", "--seed", -5, "-o", corpus / "m.npz"), 2,
                   "--seed")
    one_line_error(cli("train", corpus / "text.txt", "--hidden-size", 10**12, "-o",
                       corpus / "m.npz"), 1, "hidden_size")
    one_line_error(cli("generate", corpus / "lm.npz", "--length", 10**15), 1, "memory")
    one_line_error(cli("info", "--threads", 1000), 1, "between 1 and")


def test_cli_checks_the_output_path_before_training(corpus):
    start = time.perf_counter()
    result = cli("train", corpus / "text.txt", "-o", corpus / "no" / "such" / "dir" / "m.npz",
                 "--epochs", 50)
    one_line_error(result, 1, "no such directory")
    assert "Trained" not in result.stdout and result.stdout == ""
    assert time.perf_counter() - start < 30
    one_line_error(cli("train", corpus / "text.txt", "-o", corpus), 1, "is a directory")
    one_line_error(cli("demo", "--save", corpus / "none" / "m.npz"), 1, "no such directory")
