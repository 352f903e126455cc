"""What the imports' cell variants cost against the default cell (fastrnn, one run).

    python -m bench.variants

clip, peepholes and coupled gates (input_forget) run in the kernels; other
ONNX activation functions and PyTorch's proj_size run on the general path
(fastrnn._general, numpy). Each ratio is the median over interleaved rounds of the variant's time over
the default LSTM's of the same size (inference, T=100, float32).
"""
import numpy as np

import fastrnn
from bench.timing import median_seconds

VARIANTS = [("clip=3", {"clip": 3.0}), ("peepholes", {"peepholes": True}),
            ("input_forget", {"input_forget": True}),
            ("peepholes+coupled+clip", {"peepholes": True, "input_forget": True, "clip": 3.0}),
            ("activations (hardsigmoid)", {"activations": ["hardsigmoid", "tanh", "tanh"]}),
            ("proj_size=H/2", "proj")]
SIZES = ((256, 1), (256, 64))          # (H, B)


def main(rounds=5):
    print(f"fastrnn {fastrnn.__version__}, {fastrnn.get_num_threads()} threads, float32, T=100, "
          f"median of {rounds} interleaved rounds")
    print(f"{'LSTM variant':28s}" + "".join(f"{f'H={h} B={b}':>14s}" for h, b in SIZES))
    inputs = {(H, B): np.random.default_rng(0).standard_normal((100, B, H)).astype(np.float32)
              for H, B in SIZES}
    default = {(H, B): fastrnn.LSTM(H, H, seed=1) for H, B in SIZES}
    for name, options in VARIANTS:
        row = f"{name:28s}"
        for H, B in SIZES:
            kw = {"proj_size": H // 2} if options == "proj" else options
            variant = fastrnn.LSTM(H, H, seed=1, **kw)
            x = inputs[H, B]
            # the default and the variant by turns: the machine's drift cancels
            ratios = [median_seconds(variant, x, reps=3) / median_seconds(default[H, B], x, reps=3)
                      for _ in range(rounds)]
            row += f"{float(np.median(ratios)):14.2f}"
        print(row)


if __name__ == "__main__":
    main()
