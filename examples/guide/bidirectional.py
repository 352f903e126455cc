"""Bidirectional RNNs: when a step's answer depends on what comes later.

Task: tag every symbol of a DNA string with the symbol that follows it (the
last one with "end"). A unidirectional tagger at step t has read x_1..x_t
only, so it can do no better than guess the next symbol (1/4 of the steps;
the last step's "end" it can learn by counting, these strings all being 10
long: about 0.3 in all); a bidirectional one also reads the sequence
backwards, so at step t its reverse direction has just seen x_{t+1}.

Run:  python examples/guide/bidirectional.py
"""
import numpy as np

from fastrnn.data import Vocabulary
from fastrnn.models import SequenceTagger

END = 4                              # the tag of the last symbol (ids 0..3: A T C G)


def next_symbol_tags(vocab, s):
    ids = vocab.encode(s)
    return np.append(ids[1:], END)


def main(n=800, length=10, epochs=10):
    vocab = Vocabulary("ATCG")
    rng = np.random.default_rng(0)
    X = ["".join(rng.choice(list("ATCG"), length)) for _ in range(n)]
    X_test = ["".join(rng.choice(list("ATCG"), length)) for _ in range(200)]
    y = [next_symbol_tags(vocab, s) for s in X]
    y_test = [next_symbol_tags(vocab, s) for s in X_test]
    accuracy = {}
    for bidirectional in (False, True):
        tagger = SequenceTagger(vocab=vocab, num_tags=5, hidden_size=16,
                                bidirectional=bidirectional, seed=0)
        tagger.fit(X, y, epochs=epochs, verbose=False, seed=0)
        name = "bidirectional" if bidirectional else "unidirectional"
        accuracy[name] = tagger.evaluate(X_test, y_test)["accuracy"]
        predicted = "".join("ATCG$"[t] for t in tagger.predict([X_test[0]])[0])
        print(f"{name:15s} held-out accuracy {accuracy[name]:.2f}; {X_test[0]} -> "
              f"{predicted} ($: end)")
    return accuracy


if __name__ == "__main__":
    main()
