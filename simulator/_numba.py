"""Numba flags, set once for every kernel of the project.

`cache=True` keeps compiled kernels on disk, so a command-line run after the first pays no
compilation.  `fastmath` stays off: reordered floating-point arithmetic could change the last bit
of a value between builds, and outputs must be byte-identical for a seed.
"""

from __future__ import annotations

import numba

KERNEL_FLAGS = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

jit = numba.njit(**KERNEL_FLAGS)
jit_parallel = numba.njit(parallel=True, **KERNEL_FLAGS)
prange = numba.prange
