"""Token ids against the same input as one-hot rows (fastrnn, one run).

    python -m bench.tokens

The ids gather rows of W_ihᵀ instead of multiplying one-hot rows by W_ih; the
ratio is the ids' median time over the one-hot median in the same run.
"""
import numpy as np

import fastrnn
from bench.timing import median_seconds


def main():
    print(f"fastrnn {fastrnn.__version__}, {fastrnn.get_num_threads()} threads, float32, T=100")
    for vocab, batch in [(256, 64), (1024, 32)]:
        layer = fastrnn.LSTM(vocab, 256, seed=0)
        ids = np.random.default_rng(0).integers(0, vocab, (100, batch))
        one_hot = np.eye(vocab, dtype=np.float32)[ids]
        t_ids = median_seconds(layer, ids)
        t_hot = median_seconds(layer, one_hot)
        print(f"LSTM V={vocab} H=256 B={batch}: ids {t_ids * 1e3:.2f} ms, one-hot "
              f"{t_hot * 1e3:.2f} ms, ratio {t_ids / t_hot:.2f}")


if __name__ == "__main__":
    main()
