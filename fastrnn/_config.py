"""Build and run-time configuration, for bug reports and ``python -m fastrnn info``."""
import importlib.metadata
import platform
import sys

import numpy as np
import scipy

from fastrnn import _cpu, _engine, _kernels, _openmp, _threads


def config():
    """A dict: versions, the CPU plan, OpenMP on/off, kernel threads, and the BLAS in use."""
    blas = _threads.blas_info()
    caches = _cpu.plan().caches
    return {
        "fastrnn": __import__("fastrnn").__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu": _cpu.plan().model,
        "openmp": _openmp.openmp_enabled(),
        "kernels": _kernels.variant,
        "panel_product": _kernels.recurrent.panel_kernel(),
        "panel_variants": list(_cpu.plan().panel_variants),
        "caches": {"l1d": caches.l1d, "l2": caches.l2, "l3": caches.l3,
                   "l3_shared_by": caches.l3_shared_by, "source": caches.source},
        "num_threads": _threads.get_num_threads(),
        "interop": interop_packages(),
        "reduced_weights": _cpu.reduced_weight_support(),
        "blas": [{k: lib.get(k) for k in ("internal_api", "version", "threading_layer",
                                           "architecture", "num_threads", "filepath")}
                 for lib in blas],
    }


def reduced_weight_kernels():
    """{format: how a quantized module's batch-1 layer calls multiply its
    weights here} with the selected panel variant (see fastrnn._engine.prepacked)."""
    _panels = _kernels._panels
    if _panels.panel_kernel() == "blas":
        widened = "float32 copies (BLAS; no panel variant)"
        return dict.fromkeys(_cpu.REDUCED_WEIGHT_FLAGS, widened)
    lanes = _engine.half_lanes(_panels.panel_kernel())
    return {"float16": f"widened in registers (F16C, {lanes} lanes)",
            "bfloat16": ("bfloat16 dot products (AVX512-BF16), activations rounded"
                         if _panels.bf16_dot_products() else "widened in registers (a shift)"),
            "int8": (f"int8 dot products ({_INT8_DOT_NAMES[_panels.int8_dot_kind()]}), "
                     "activations quantized per row"
                     if _panels.int8_dot_products() else "widened in registers")}


_INT8_DOT_NAMES = {"avx512_vnni": "AVX-512 VNNI", "avx2": "AVX2 vpmaddubsw"}


def interop_packages():
    """{package: installed version or None} of the optional interop routes
    (from_torch / to_torch, from_keras, fastrnn.onnx and its oracle), read from
    the installed metadata without importing them."""
    out = {}
    for name in ("torch", "keras", "onnx", "onnxruntime"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def show_config(file=None):
    """Print the configuration (see ``config()``) and return it as a dict."""
    cfg = config()
    out = file or sys.stdout
    plan_lines = {line.split(":")[0]: line for line in _cpu.plan().describe(cfg["panel_product"])}
    for key, value in cfg.items():
        if key in ("cpu", "kernels"):
            print(plan_lines[key], file=out)
        elif key == "panel_product":
            print(plan_lines[key], file=out)
        elif key == "caches":
            print(plan_lines["caches per core"], file=out)
            print(plan_lines["panel_blocks"], file=out)
            print(f"thread_splits: {_engine.thread_splits_text()}", file=out)
        elif key == "panel_variants":
            continue
        elif key == "reduced_weights":
            kernels = reduced_weight_kernels()
            print("reduced_weights (fastrnn.quantize; this CPU's instructions for each, and "
                  "how batch-1 layer calls multiply them): "
                  + "; ".join(f"{fmt} ({' '.join(found) or 'none'}): {kernels[fmt]}"
                              for fmt, found in value.items()), file=out)
        elif key == "interop":
            print("interop: " + ", ".join(f"{k} {v or '(not installed)'}"
                                          for k, v in value.items()), file=out)
        elif key == "blas":
            for lib in value:
                print(f"blas: {lib['internal_api']} {lib['version']} "
                      f"({lib['threading_layer']}, {lib['architecture']}, "
                      f"{lib['num_threads']} threads outside fastrnn kernels) {lib['filepath']}",
                      file=out)
        else:
            print(f"{key}: {value}", file=out)
    return cfg
