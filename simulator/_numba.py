"""Numba flags, set once for every kernel of the project.

`cache=True` keeps compiled kernels on disk, so a command-line run after the first pays no
compilation.  `fastmath` stays off: reordered floating-point arithmetic could change the last bit
of a value between builds, and outputs must be byte-identical for a seed.
"""

from __future__ import annotations

import numba

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
