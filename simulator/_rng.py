"""A counter-based random stream per host: draw k of step t is a pure function of (host seed, t, k).

Because no state is carried, a draw can be recomputed anywhere: the run with anomalies and the run
without them see the same numbers, any thread may handle any host, and a skipped draw costs
nothing.  splitmix64's output function is the hash (Steele, Lea & Flood 2014); normals come from
Box-Muller on two uniforms.
"""

from __future__ import annotations

import numpy as np

from ._numba import jit_typed

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
SLOTS_PER_STEP = np.uint64(40)  # draw slots reserved per time step
HOST_DOMAIN = np.uint64(1 << 62)  # counters of per-host (not per-step) draws
EXTRA_DOMAIN = np.uint64(1 << 61)  # counters of the per-step draws added after the first 40 slots
EXTRA_SLOTS_PER_STEP = np.uint64(8)
TWO_PI = 2.0 * np.pi


@jit_typed("uint64(uint64)")
def splitmix64(x):
    """The splitmix64 finaliser: a bijective 64-bit mix."""
    z = x
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@jit_typed("float64(uint64, uint64)")
def counter_uniform(seed, counter):
    """Uniform in (0, 1) for one counter of the stream: the top 53 bits of the mixed counter."""
    z = splitmix64(seed + counter * GOLDEN)
    return ((z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@jit_typed("float64(float64, float64)")
def box_muller(u1, u2):
    """Standard normal from two uniforms (Box-Muller, cosine branch)."""
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(TWO_PI * u2)


@jit_typed("float64(uint64, int64, int64)")
def uniform(seed, t, k):
    """Uniform in (0, 1) for draw slot k of step t."""
    return counter_uniform(seed, np.uint64(t) * SLOTS_PER_STEP + np.uint64(k) + np.uint64(1))


@jit_typed("float64(uint64, int64, int64)")
def normal(seed, t, k):
    """Standard normal from slots k and k+1."""
    return box_muller(uniform(seed, t, k), uniform(seed, t, k + 1))


@jit_typed("float64(uint64, int64, int64)")
def extra_uniform(seed, t, k):
    """Uniform in (0, 1) for extra draw slot k (0-7) of step t: a stream of its own, so that draws
    added to the model leave every earlier slot (and so the rest of a host) as it was."""
    return counter_uniform(seed, EXTRA_DOMAIN + np.uint64(t) * EXTRA_SLOTS_PER_STEP + np.uint64(k))


@jit_typed("float64(uint64, int64, int64)")
def extra_normal(seed, t, k):
    """Standard normal from extra slots k and k+1."""
    return box_muller(extra_uniform(seed, t, k), extra_uniform(seed, t, k + 1))


@jit_typed("float64(uint64, int64)")
def host_uniform(seed, k):
    """Uniform draw k that belongs to the host, not to a step (e.g. 'runs a cron job')."""
    return counter_uniform(seed, HOST_DOMAIN + np.uint64(k))


def host_seeds(seed: int, first_host: int, n_hosts: int) -> np.ndarray:
    """One 64-bit stream key per host, from SeedSequence(seed) children keyed by global host index."""
    out = np.empty(n_hosts, dtype=np.uint64)
    for i in range(n_hosts):
        ss = np.random.SeedSequence(seed, spawn_key=(first_host + i,))
        out[i] = ss.generate_state(1, dtype=np.uint64)[0]
    return out
