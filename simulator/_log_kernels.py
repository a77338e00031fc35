"""Kernels of the log simulator: counter-based draws and Poisson counts, arrays in and arrays out.

A log draw is a pure function of (host key, stream, a, b): the host key comes from
SeedSequence(seed, spawn_key=(LOG_STREAM, host)), the stream names the template or field, and
(a, b) say which line and which of its values.  Nothing is carried from draw to draw, so the
lines of a host are the same whichever hosts are simulated with it and however many threads run.
"""

from __future__ import annotations

import numpy as np

from ._numba import jit
from ._rng import GOLDEN, splitmix64

INV_2_53 = 1.0 / 9007199254740992.0


@jit
def hash_uniforms(keys, stream, a, b, out):
    """out[i] = uniform in (0, 1) from (keys[i], stream, a[i], b[i])."""
    for i in range(out.shape[0]):
        z = splitmix64(keys[i] ^ stream)
        z = splitmix64(z + np.uint64(a[i]) * GOLDEN)
        z = splitmix64(z + np.uint64(b[i]) * GOLDEN)
        out[i] = ((z >> np.uint64(11)) + 0.5) * INV_2_53


@jit
def poisson_counts(lam, u, out):
    """out[i] = Poisson(lam[i]) by inverse CDF of u[i] (normal approximation above 60)."""
    for i in range(out.shape[0]):
        mu = lam[i]
        if mu <= 0.0:
            out[i] = 0
            continue
        if mu > 60.0:
            # inverse of the normal CDF by the logistic approximation: fine for counts this large
            x = np.log(u[i] / (1.0 - u[i])) / 1.702
            out[i] = max(0, int(np.floor(mu + np.sqrt(mu) * x + 0.5)))
            continue
        p = np.exp(-mu)
        cdf = p
        k = 0
        while u[i] > cdf and k < 1000:
            k += 1
            p *= mu / k
            cdf += p
        out[i] = k
