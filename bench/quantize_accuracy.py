"""What reduced-precision weights (fastrnn.quantize) cost in accuracy (one run).

    python -m bench.quantize_accuracy

1. Random-weight layers (PyTorch's initialisation), inputs N(0, 1): the max
   and mean absolute output error against float32 (the issue's bounds:
   float16 2e-3, bfloat16 2e-2, int8 3e-2).
2. A trained model of each ready-made type, scored on held-out data before
   and after quantizing: classification and tagging accuracy, seq2seq exact
   matches, language-model perplexity (the issue's bounds: at most 0.5
   points of accuracy lost, perplexity at most 1% higher).
The reduced weights' own products run where they pay: int8 on int8 dot
products (any panel variant) and bfloat16 on bfloat16 dot products
(AVX512-BF16) at every size and batch, their activations rounded per row
(255 levels; bfloat16); the widened formats for a batch of at most two rows
with weights beyond half an L2 per thread (the B=1 layers), elsewhere
float32 on the widened weights.
SMALL (FASTRNN_BENCH_SMOKE=1) runs tiny sizes, to keep the script working.
"""
import os

import numpy as np

import fastrnn
from fastrnn import datasets
from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger

FORMATS = ("float16", "bfloat16", "int8")
SMALL = bool(os.environ.get("FASTRNN_BENCH_SMOKE"))


def layer_errors():
    configs = [("LSTM I=H=256 B=4 T=100", fastrnn.LSTM, 256, 4, 100),
               ("LSTM I=H=256 B=1 T=100", fastrnn.LSTM, 256, 1, 100),
               ("GRU I=H=1024 B=1 T=50", fastrnn.GRU, 1024, 1, 50)]
    if SMALL:
        configs = [(name, cls, 16, 2, 5) for name, cls, _, _, _ in configs]
    print("-- output error against float32 (max / mean absolute)")
    print(f"{'layer':26s}" + "".join(f"{f:>22s}" for f in FORMATS))
    for name, cls, H, B, T in configs:
        layer = cls(H, H, seed=1)
        x = np.random.default_rng(0).standard_normal((T, B, H)).astype(np.float32)
        y, _ = layer(x)
        row = f"{name:26s}"
        for fmt in FORMATS:
            err = np.abs(fastrnn.quantize(layer, fmt)(x)[0] - y)
            row += f"{f'{err.max():.1e} / {err.mean():.1e}':>22s}"
        print(row)


def _motif_tags(s):
    """1 at every position covered by an occurrence of TATA, else 0."""
    tags = np.zeros(len(s), np.intp)
    for i in range(len(s) - 3):
        if s[i:i + 4] == "TATA":
            tags[i:i + 4] = 1
    return tags


def trained_models():
    n, epochs, hidden = (64, 1, 8) if SMALL else (2000, 8, 48)
    X, y = datasets.dna_motif(n, seed=0)
    Xt, yt = datasets.dna_motif(n // 2, seed=1)
    clf = SequenceClassifier(vocab=fastrnn.data.Vocabulary("ATCG"), num_classes=2,
                             hidden_size=hidden, seed=0)
    clf.fit(X, y, epochs=epochs, verbose=False, seed=0)
    tagger = SequenceTagger(vocab=fastrnn.data.Vocabulary("ATCG"), num_tags=2,
                            hidden_size=hidden, bidirectional=True, seed=0)
    tagger.fit(X, [_motif_tags(s) for s in X], epochs=epochs, verbose=False, seed=0)
    S, R = datasets.reversal(n, seed=0)
    St, Rt = datasets.reversal(n // 2, seed=1)
    s2s = Seq2Seq(10, 10, hidden_size=hidden * 2, seed=0)
    s2s.fit(S, R, epochs=epochs * 3, verbose=False, seed=0)
    text = ("the quick brown fox jumps over the lazy dog. " * (5 if SMALL else 200))
    held = "a lazy fox jumps over the quick brown dog. " * (2 if SMALL else 40)
    lm = LanguageModel(fastrnn.data.Vocabulary.from_text(text + held), hidden_size=hidden * 2,
                       seed=0)
    lm.fit(text, seq_len=32, epochs=epochs, verbose=False, seed=0)
    scores = {
        "classifier accuracy": lambda m: m.evaluate(Xt, yt)["accuracy"],
        "tagger accuracy": lambda m: m.evaluate(Xt, [_motif_tags(s) for s in Xt])["accuracy"],
        "seq2seq exact matches": lambda m: m.evaluate(St, Rt)["exact"],
        "LM perplexity": lambda m: m.evaluate(held, seq_len=32)["perplexity"],
    }
    print("-- trained models, held-out data: float32, then each format")
    print(f"{'score':24s}{'float32':>10s}" + "".join(f"{f:>10s}" for f in FORMATS))
    for (name, score), model in zip(scores.items(), (clf, tagger, s2s, lm)):
        row = f"{name:24s}{score(model):10.4f}"
        for fmt in FORMATS:
            row += f"{score(fastrnn.quantize(model, fmt)):10.4f}"
        print(row)


def main():
    print(f"fastrnn {fastrnn.__version__}, float32 models")
    layer_errors()
    trained_models()


if __name__ == "__main__":
    main()
