"""What this CPU is, read once when fastrnn loads: the kernel build and panel
variant its instruction set runs, and the data caches one core sees.

    plan()            -> CpuPlan (cached): model, kernel build, panel variants, caches
    read_caches(root) -> Caches from a sysfs tree (tests give a fake one)

The machines fastrnn runs on differ (AVX-512 and AVX2-only, 1 MiB and
512 KiB of L2 per core have all been seen), so nothing here is a constant
of one CPU: the caches come from Linux's sysfs
(/sys/devices/system/cpu/cpu0/cache), else from glibc's sysconf, else they
are unknown (None). FASTRNN_CACHE overrides them, e.g.
``FASTRNN_CACHE=l1d=32K,l2=512K,l3=16M``, so that tests and benchmarks can
run the plans of a small-cache machine on any machine. ``python -m fastrnn
info`` prints the plan.
"""
import ctypes
import ctypes.util
import functools
import os
import platform
import re
from dataclasses import dataclass

SYSFS = "/sys/devices/system/cpu/cpu0/cache"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
# glibc's sysconf names for the cache sizes (_SC_LEVEL1_DCACHE_SIZE, ...):
# Python's os.sysconf does not know them everywhere
_SYSCONF = {"l1d": 190, "l2": 193, "l3": 196}


@dataclass(frozen=True)
class Caches:
    """Data cache sizes in bytes as one core sees them (None: unknown), and
    how many logical CPUs share the L3."""
    l1d: int = None
    l2: int = None
    l3: int = None
    l3_shared_by: int = None
    source: str = "unknown"


@dataclass(frozen=True)
class CpuPlan:
    """The choices made for this CPU when fastrnn loads."""
    model: str                # the CPU's name, as the kernel reports it
    kernels: str              # the kernel build: "avx512" (x86-64-v4), "avx2" (x86-64-v3), "baseline"
    panel_variants: tuple     # the float32 products this CPU runs, best first (then "blas")
    panel_rows: int           # rows of W per packed panel
    caches: Caches

    def describe(self, panel):
        """The plan as lines of text (show_config, ``python -m fastrnn info``);
        panel: the panel variant in use now."""
        c = self.caches
        caches = ", ".join(f"{name} {_size_text(v)}" for name, v in
                           (("L1d", c.l1d), ("L2", c.l2), ("L3", c.l3)))
        shared = f" (L3 shared by {c.l3_shared_by} CPUs)" if c.l3_shared_by else ""
        return [f"cpu: {self.model}",
                f"kernels: {self.kernels}",
                f"panel_product: {panel} (this CPU runs: {', '.join(self.panel_variants)}; "
                f"panels of {self.panel_rows} rows)",
                f"caches per core: {caches}{shared}, from {c.source}",
                f"panel_blocks: {_blocks_text()}"]


def _blocks_text():
    """How the selected panel variant blocks a product, as the caches make it."""
    from fastrnn._kernels import _panels
    b = _panels.blocking(1 << 16)
    if b is None:
        return "none (BLAS)"
    rows, cols = b["tile"]
    return (f"register tile {rows} x {cols} of C; k in blocks of <= {b['kc']} "
            f"(a group of {b['group']} columns of W in a quarter of L2, read by every "
            f"tile of rows in turn); rows of A in blocks of <= {b['mc']} "
            f"(in half of L2)")


def _size_text(n):
    if n is None:
        return "?"
    for unit in ("G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]} {unit}iB"
    return f"{n} B"


def parse_size(text):
    """'512K', '32 MiB', '1M', '65536' -> bytes; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"not a cache size: {text!r} (expected e.g. 32K, 512K, 16M)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def _cpu_count(cpu_list):
    """'0-1,4' -> 3."""
    count = 0
    for part in cpu_list.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            count += int(hi) - int(lo) + 1
        elif part:
            count += 1
    return count


def read_caches(root=SYSFS):
    """The data caches of one core from a sysfs cache directory, or None."""
    found = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    for entry in entries:
        if not entry.startswith("index"):
            continue
        path = os.path.join(root, entry)
        try:
            with open(os.path.join(path, "level")) as f:
                level = int(f.read())
            with open(os.path.join(path, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(path, "size")) as f:
                size = parse_size(f.read())
            shared = None
            if os.path.exists(os.path.join(path, "shared_cpu_list")):
                with open(os.path.join(path, "shared_cpu_list")) as f:
                    shared = _cpu_count(f.read())
        except (OSError, ValueError):
            continue
        if kind not in ("Data", "Unified") or level not in (1, 2, 3):
            continue
        found[level] = (size, shared)
    if not found:
        return None
    return Caches(l1d=found.get(1, (None,))[0], l2=found.get(2, (None,))[0],
                  l3=found.get(3, (None,))[0], l3_shared_by=found.get(3, (None, None))[1],
                  source="sysfs")


def _sysconf_caches():
    """glibc's sysconf cache sizes, or None where it does not know them."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None
    sizes = {}
    for name, code in _SYSCONF.items():
        value = libc.sysconf(code)
        sizes[name] = value if value > 0 else None
    if not any(sizes.values()):
        return None
    return Caches(**sizes, source="sysconf")


def _override(text, caches):
    """caches with the sizes FASTRNN_CACHE names replaced."""
    sizes = {"l1d": caches.l1d, "l2": caches.l2, "l3": caches.l3}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in sizes:
            raise ImportError(f"FASTRNN_CACHE must be a list like l1d=32K,l2=512K,l3=16M, "
                              f"got {text!r}")
        try:
            sizes[key] = parse_size(value)
        except ValueError as exc:
            raise ImportError(f"FASTRNN_CACHE: {exc}") from None
    return Caches(**sizes, l3_shared_by=caches.l3_shared_by, source="FASTRNN_CACHE")


def detect_caches():
    """This machine's caches: sysfs, else sysconf, else unknown; FASTRNN_CACHE wins."""
    caches = read_caches() or _sysconf_caches() or Caches()
    text = os.environ.get("FASTRNN_CACHE", "").strip()
    return _override(text, caches) if text else caches


def _model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# the instructions that compute with reduced weights, per format (/proc/cpuinfo names)
REDUCED_WEIGHT_FLAGS = {"float16": ("f16c", "avx512_fp16"), "bfloat16": ("avx512_bf16",),
                        "int8": ("avx2", "avx512_vnni")}


@functools.lru_cache(maxsize=None)
def cpu_flags():
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def reduced_weight_support():
    """{format: [the CPU's instructions for it]} (fastrnn.quantize's formats)."""
    flags = cpu_flags()
    return {fmt: [f for f in names if f in flags] for fmt, names in REDUCED_WEIGHT_FLAGS.items()}


@functools.lru_cache(maxsize=None)
def plan():
    """The CPU plan (computed once)."""
    from fastrnn import _kernels
    from fastrnn._kernels import _panels
    caches = detect_caches()
    # the products block for these caches (unknown ones keep the kernels' small defaults)
    _panels.set_cache_sizes(caches.l1d, caches.l2, caches.l3)
    return CpuPlan(model=_model(), kernels=_kernels.variant,
                   panel_variants=tuple(_panels.panel_kernels()),
                   panel_rows=_panels.PANEL_ROWS, caches=caches)
