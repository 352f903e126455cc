"""Build the Cython kernels, with OpenMP when the compiler has it.

Environment:
  FASTRNN_NO_OPENMP=1   build serial kernels even if OpenMP is available.
  FASTRNN_NATIVE=1      add -march=native (faster here, may not run elsewhere).
  FASTRNN_TRACE=1       time-stamp every step of the unit split for
                        `python -m bench.step_trace` (build a copy, with --force).
No -ffast-math: it changes results and, linked in, sets flush-to-zero for the
whole process.
"""
import glob
import os
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODULES = [
    "fastrnn._openmp",
    "fastrnn._kernels._cells",        # the cell kinds for Python
    "fastrnn._kernels._panels",       # panel products, packing, the choice of kernels: built once
    "fastrnn._kernels._recurrent",
]
# built only where the compiler targets them; chosen at run time by the CPU
AVX2_MODULE = "fastrnn._kernels._recurrent_avx2"
AVX2_FLAGS = ["-march=x86-64-v3"]
# 512-bit vectors preferred: GCC's x86-64-v4 default keeps loops in 256 bits
AVX512_MODULE = "fastrnn._kernels._recurrent_avx512"
AVX512_FLAGS = ["-march=x86-64-v4", "-mprefer-vector-width=512"]
ISA_MODULES = {AVX2_MODULE: AVX2_FLAGS, AVX512_MODULE: AVX512_FLAGS}


def _truthy(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


# Flags that keep IEEE results but let the loops of the gate passes vectorise:
# without traps assumed, the clamps and selects become blends; the alias-check
# budget lets the compiler version the loops that read several gate rows.
VECTORIZE_FLAGS = ["-fno-trapping-math", "--param=vect-max-version-for-alias-checks=100"]


def _compiles(compiler, flags, source="int main(void) { return 0; }\n", link=False):
    """Whether the build's own compiler accepts ``flags`` for ``source``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp,
                                       extra_postargs=flags + ["-Werror"])
            if link:
                compiler.link_executable(objects, os.path.join(tmp, "probe"),
                                         extra_postargs=flags)
        except Exception:  # any compile or link failure means "no"
            return False
    return True


def _compiler_has_openmp(compiler):
    """Compile and link a tiny OpenMP program with the build's own compiler."""
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    return _compiles(compiler, ["-fopenmp"], source, link=True)


class BuildExt(build_ext):
    """build_ext that adds optimisation and (probed) OpenMP flags."""

    def build_extensions(self):
        compile_args = ["-O3"] + [f for f in VECTORIZE_FLAGS if _compiles(self.compiler, [f])]
        link_args = []
        if _truthy("FASTRNN_NATIVE"):
            compile_args.append("-march=native")
        if _truthy("FASTRNN_TRACE"):
            compile_args.append("-DFASTRNN_TRACE=1")
        if _truthy("FASTRNN_NO_OPENMP"):
            print("fastrnn: FASTRNN_NO_OPENMP set, building serial kernels", file=sys.stderr)
        elif _compiler_has_openmp(self.compiler):
            compile_args.append("-fopenmp")
            link_args.append("-fopenmp")
        else:
            print("fastrnn: the compiler has no OpenMP, building serial kernels",
                  file=sys.stderr)
        for module, flags in ISA_MODULES.items():
            if not _compiles(self.compiler, flags):
                print(f"fastrnn: the compiler cannot target {flags}, not building {module}",
                      file=sys.stderr)
                self.extensions = [e for e in self.extensions if e.name != module]
        for ext in self.extensions:
            extra = ISA_MODULES.get(ext.name, [])
            ext.extra_compile_args = compile_args + extra + list(ext.extra_compile_args)
            ext.extra_link_args = link_args + list(ext.extra_link_args)
        super().build_extensions()


# _openmp.h (fastrnn/) and _panel.h (fastrnn/_kernels/) are found from every module.
# Cython regenerates a module's C when its .pyx, .pxd or .pxi change, but not
# when a C header it includes does: the headers are every module's depends, so
# that an edit to a kernel in a .h rebuilds the modules (an in-place build
# otherwise keeps the old object files and links the old kernel).
HEADERS = sorted(glob.glob("fastrnn/*.h") + glob.glob("fastrnn/_kernels/*.h"))
extensions = [
    Extension(name, [name.replace(".", "/") + ".pyx"], include_dirs=["fastrnn", "fastrnn/_kernels"],
              depends=HEADERS)
    for name in MODULES + list(ISA_MODULES)
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False,
                             "wraparound": False, "cdivision": True},
    ),
    cmdclass={"build_ext": BuildExt},
)
