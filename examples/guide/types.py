"""The types of RNN, each a fastrnn model (T_x inputs, T_y outputs):

- many-to-one (T_y = 1): SequenceClassifier, the last state read by a Dense
  head (sentiment, here: does a DNA string contain "GC"?);
- many-to-many, T_y = T_x: SequenceTagger, a tag at every step;
- one-to-many: LanguageModel.generate, each sampled symbol fed back as the
  next input (music, text generation from a seed);
- many-to-many, T_y != T_x, encoder-decoder: Seq2Seq, an encoder reads the
  whole input, a decoder writes the output from its final state
  (translation; here: reversing a string).

Each is trained for a few epochs on a toy task and shown on one input.

Run:  python examples/guide/types.py
"""
import numpy as np

from fastrnn import datasets
from fastrnn.data import Vocabulary
from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger


def random_dna(n, length, seed):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ATCG"), length)) for _ in range(n)]


def main(n=600, epochs=8):
    vocab = Vocabulary("ATCG")
    X = random_dna(n, 12, 0)
    out = {}

    # many-to-one: one label per sequence
    clf = SequenceClassifier(vocab=vocab, num_classes=2, hidden_size=16, seed=0)
    clf.fit(X, [int("GC" in s) for s in X], epochs=epochs, verbose=False, seed=0)
    X_test = random_dna(200, 12, 1)
    out["many-to-one accuracy"] = clf.evaluate(X_test, [int("GC" in s) for s in X_test])[
        "accuracy"]
    print(f"many-to-one   {X_test[0]!r} contains 'GC': {bool(clf.predict([X_test[0]])[0])} "
          f"(held-out accuracy {out['many-to-one accuracy']:.2f})")

    # many-to-many, T_y = T_x: one tag per step (is this symbol a C or a G?)
    tagger = SequenceTagger(vocab=vocab, num_tags=2, hidden_size=16, seed=0)
    tags = [np.array([int(c in "CG") for c in s]) for s in X]
    tagger.fit(X, tags, epochs=epochs, verbose=False, seed=0)
    out["many-to-many accuracy"] = tagger.evaluate(
        X_test, [np.array([int(c in "CG") for c in s]) for s in X_test])["accuracy"]
    print(f"many-to-many  {X_test[0]!r} -> "
          f"{''.join(map(str, tagger.predict([X_test[0]])[0]))} (1: C or G; held-out "
          f"accuracy {out['many-to-many accuracy']:.2f})")

    # one-to-many: from one seed symbol, generate
    text = "ACGT" * 200
    lm = LanguageModel(vocab, hidden_size=16, seed=0)
    lm.fit(text, seq_len=16, epochs=epochs, verbose=False, seed=0)
    out["one-to-many"] = lm.generate("A", 12, temperature=0.1, seed=0)
    print(f"one-to-many   'A' -> {out['one-to-many']!r} (trained on ACGTACGT...)")

    # encoder-decoder: the output has its own length
    S, R = datasets.reversal(n, seed=0)
    s2s = Seq2Seq(10, 10, hidden_size=32, seed=0)
    s2s.fit(S, R, epochs=epochs * 3, verbose=False, seed=0)
    St, Rt = datasets.reversal(100, seed=1)
    out["encoder-decoder exact"] = s2s.evaluate(St, Rt)["exact"]
    print(f"encoder-decoder {[int(v) for v in St[0]]} -> "
          f"{[int(v) for v in s2s.predict([St[0]])[0]]} "
          f"(reversal; held-out exact matches {out['encoder-decoder exact']:.2f})")
    return out


if __name__ == "__main__":
    main()
