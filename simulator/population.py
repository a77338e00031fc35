"""The host population: which profile each host has and its drawn parameters, as arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalogue import HOST_PARAMETER_NAMES, INTEGER_PARAMS, LOG_UNIFORM
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


def build_population(config: SimConfig, n_hosts: int, seed: int) -> Population:
    """Assign profiles in their configured shares and draw every host's parameters."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(POPULATION_STREAM,)))
    shares = np.array([p.share for p in config.profiles])
    profile = np.repeat(np.arange(len(shares)), exact_counts(shares, n_hosts))
    profile = rng.permutation(profile)
    lo = np.array([[r[0] for r in p.ranges] for p in config.profiles])[profile]
    hi = np.array([[r[1] for r in p.ranges] for p in config.profiles])[profile]
    u = rng.random((n_hosts, len(HOST_PARAMETER_NAMES)))
    params = lo + u * (hi - lo)
    for j, name in enumerate(HOST_PARAMETER_NAMES):
        if name in LOG_UNIFORM:
            a, b = np.log(np.maximum(lo[:, j], 1e-12)), np.log(np.maximum(hi[:, j], 1e-12))
            params[:, j] = np.exp(a + u[:, j] * (b - a))
        if name in INTEGER_PARAMS:
            params[:, j] = np.floor(params[:, j] + 0.5)
    return Population(profile, params, tuple(p.name for p in config.profiles))
