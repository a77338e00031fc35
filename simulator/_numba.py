"""Numba flags, set once for every kernel of the project.

`cache=True` keeps compiled kernels on disk, so a command-line run after the first pays no
compilation.  `fastmath` stays off: reordered floating-point arithmetic could change the last bit
of a value between builds, and outputs must be byte-identical for a seed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numba

PACKAGE_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def package_stamp() -> tuple:
    """(name, mtime, size) of every source file of the package: what a cached kernel was built from.

    Numba's cache checks only the file that defines a kernel, but a kernel also freezes the
    constants and inlines the functions it takes from other modules (the catalogue's parameter
    columns, the random draws of `_rng.py`), so a change there alone would leave a stale kernel.
    """
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    return tuple((str(f.relative_to(PACKAGE_DIR)), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def _register_package_locator() -> None:
    """Kernels of this package are cached where numba would put them (NUMBA_CACHE_DIR, else beside
    their source, else the user's cache folder for a read-only install), but their cache is valid only for the package as it is (`package_stamp`); kernels
    of other code are left to numba."""
    try:
        from numba.core import caching
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        bases = [getattr(caching, name, None) or getattr(caching, "_" + name)
                 for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]
    except AttributeError:  # another numba layout: its own per-file check stays
        return
    for base in bases:
        if any(getattr(c, "package_base", None) is base for c in impl._locator_classes):
            continue
        locator = type(f"Package{base.__name__.lstrip('_')}", (base,), {
            "package_base": base, "from_function": classmethod(_package_only(base)),
            "get_source_stamp": lambda self: package_stamp()})
        impl._locator_classes.insert(impl._locator_classes.index(base), locator)


def _package_only(base):
    def from_function(cls, py_func, py_file):
        if not os.path.realpath(py_file).startswith(str(PACKAGE_DIR) + os.sep):
            return None
        return base.from_function.__func__(cls, py_func, py_file)
    return from_function


_register_package_locator()

KERNEL_FLAGS = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

jit = numba.njit(**KERNEL_FLAGS)


def jit_typed(signature: str):
    """A kernel compiled for one signature only.

    For the small helpers called with constant arguments (draw slots): without a signature numba
    compiles one specialisation per literal value (23 of `uniform` in the host model), each costing
    compile time on a cold start; with one, callers' arguments are cast to it.
    """
    return numba.njit(signature, **KERNEL_FLAGS)

jit_parallel = numba.njit(parallel=True, **KERNEL_FLAGS)
prange = numba.prange

# the host model's step functions: inlined into their caller at numba IR level, so that splitting the
# host loop into small functions passing typed records (NamedTuples) costs no calls or copies
jit_inline = numba.njit(inline="always", **KERNEL_FLAGS)
