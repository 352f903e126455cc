"""The timer of the one-run comparison scripts (tokens.py, denormals.py, generation.py)."""
import time

import numpy as np


def median_seconds(fn, *args, reps=15):
    """Median wall time of fn(*args) over ``reps`` calls, after one untimed call."""
    fn(*args)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
