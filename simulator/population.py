"""The host population: which profile each host has and its drawn parameters, as arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalogue import DRAWN_LATER, HOST_PARAMETER_NAMES, INTEGER_PARAMS, LOG_UNIFORM
from .config import SimConfig

POPULATION_STREAM = 1  # SeedSequence spawn key of the population draws


@dataclass(frozen=True)
class Population:
    profile: np.ndarray        # int64[H]: index into config.profiles
    params: np.ndarray         # float64[H, N_PARAMS]
    profile_names: tuple[str, ...]

    @property
    def n_hosts(self) -> int:
        return len(self.profile)


def exact_counts(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to shares that add up to exactly `total` (largest remainder)."""
    raw = np.asarray(shares, dtype=np.float64) * total / max(float(np.sum(shares)), 1e-300)
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def uniform_draws(rng: np.random.Generator, n_hosts: int) -> np.ndarray:
    """Each host's uniform draw per parameter (HOST_PARAMETER_NAMES columns): the parameters of the
    first layout row by row, then those of DRAWN_LATER one column after the other, in their order (so
    that appending one to DRAWN_LATER leaves the draws of the earlier ones as they were)."""
    later = [HOST_PARAMETER_NAMES.index(name) for name in DRAWN_LATER]
    first = [j for j in range(len(HOST_PARAMETER_NAMES)) if j not in later]
    u = np.empty((n_hosts, len(HOST_PARAMETER_NAMES)))
    u[:, first] = rng.random((n_hosts, len(first)))
    for j in later:
        u[:, j] = rng.random(n_hosts)
    return u


def build_population(config: SimConfig, n_hosts: int, seed: int) -> Population:
    """Assign profiles in their configured shares and draw every host's parameters."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(POPULATION_STREAM,)))
    shares = np.array([p.share for p in config.profiles])
    profile = np.repeat(np.arange(len(shares)), exact_counts(shares, n_hosts))
    profile = rng.permutation(profile)
    lo = np.array([[r[0] for r in p.ranges] for p in config.profiles])[profile]
    hi = np.array([[r[1] for r in p.ranges] for p in config.profiles])[profile]
    u = uniform_draws(rng, n_hosts)
    params = lo + u * (hi - lo)
    for j, name in enumerate(HOST_PARAMETER_NAMES):
        if name in LOG_UNIFORM:
            a, b = np.log(np.maximum(lo[:, j], 1e-12)), np.log(np.maximum(hi[:, j], 1e-12))
            params[:, j] = np.exp(a + u[:, j] * (b - a))
        if name in INTEGER_PARAMS:
            params[:, j] = np.floor(params[:, j] + 0.5)
    return Population(profile, params, tuple(p.name for p in config.profiles))
