"""Build and run-time configuration, for bug reports and ``python -m fastrnn info``."""
import platform
import sys

import numpy as np
import scipy

from fastrnn import _kernels, _openmp, _threads


def config():
    """A dict: versions, OpenMP on/off, kernel threads, and the BLAS in use."""
    blas = _threads.blas_info()
    return {
        "fastrnn": __import__("fastrnn").__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openmp": _openmp.openmp_enabled(),
        "kernels": _kernels.variant,
        "panel_product": _kernels.recurrent.panel_kernel(),
        "num_threads": _threads.get_num_threads(),
        "blas": [{k: lib.get(k) for k in ("internal_api", "version", "threading_layer",
                                           "architecture", "num_threads", "filepath")}
                 for lib in blas],
    }


def show_config(file=None):
    """Print the configuration (see ``config()``) and return it as a dict."""
    cfg = config()
    out = file or sys.stdout
    for key, value in cfg.items():
        if key == "blas":
            for lib in value:
                print(f"blas: {lib['internal_api']} {lib['version']} "
                      f"({lib['threading_layer']}, {lib['architecture']}, "
                      f"{lib['num_threads']} threads outside fastrnn kernels) {lib['filepath']}",
                      file=out)
        else:
            print(f"{key}: {value}", file=out)
    return cfg
