"""Generation speed of a LanguageModel, with and without holding BLAS to one
thread during the loop (what LanguageModel.generate does).

    python -m bench.generation

For a small (28 symbols) and a large (5000 symbols) vocabulary, prints the
time per generated symbol with fastrnn's setting and with the BLAS left
multi-threaded, and their ratio, from the same run.
"""
import contextlib


import fastrnn
from fastrnn.data import Vocabulary
from fastrnn.models import LanguageModel, language
from bench.timing import median_seconds


def per_symbol(lm, prefix, length=200):
    return median_seconds(lambda: lm.generate(prefix, length, seed=0), reps=5) / length


def main():
    print(f"fastrnn {fastrnn.__version__}, {fastrnn.get_num_threads()} threads; "
          "2-layer LSTM, H=128; time per generated symbol")
    held = language.single_threaded_blas
    for size in (28, 5000):
        vocab = Vocabulary([f"s{i}" for i in range(size)])
        lm = LanguageModel(vocab, hidden_size=128, num_layers=2, seed=0)
        prefix = ["s1", "s2"]
        fast = per_symbol(lm, prefix)
        language.single_threaded_blas = contextlib.nullcontext      # BLAS left as it is
        try:
            free = per_symbol(lm, prefix)
        finally:
            language.single_threaded_blas = held
        print(f"V={size:<5d} BLAS held to one thread: {fast * 1e6:8.1f} us, "
              f"BLAS multi-threaded: {free * 1e6:8.1f} us, ratio {fast / free:.2f}")


if __name__ == "__main__":
    main()
