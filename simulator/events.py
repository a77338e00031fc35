"""The event plan: exactly N anomaly events (host, kind, start, length, severity) as columns.

Events on one host are placed without overlap while the trace has room (so every event is seen on
its own); when a host is asked for more than fits, its events overlap.  Exactly N events are
planned either way, and exactly N appear in the event table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anomalies import ANOMALY_KINDS, EventBatch
from .catalogue import M, N_CHANNELS
from .config import SimConfig
from .errors import SimulatorError
from .population import Population, exact_counts

EVENT_STREAM = 2   # SeedSequence spawn key of the event plan
GAP_STEPS = 2      # quiet steps kept between events on one host when there is room


@dataclass(frozen=True)
class EventPlan:
    host: np.ndarray        # int64[E], sorted by (host, start)
    kind: np.ndarray        # int64[E]: index into kind_names
    start: np.ndarray       # int64[E]: first step of the window
    length: np.ndarray      # int64[E]: window length in steps
    severity: np.ndarray    # float64[E]
    profile_row: np.ndarray  # int64[E]: first row of the event's profile in `profiles`
    profiles: np.ndarray    # float64[sum(length), N_CHANNELS]
    kind_names: tuple[str, ...]
    first_id: int = 0       # event ids are first_id + row (a sharded job numbers its chunks' events apart)

    @property
    def n(self) -> int:
        return len(self.host)

    def host_pointers(self, n_hosts: int) -> np.ndarray:
        """CSR pointers: events of host h are rows ptr[h]:ptr[h+1]."""
        return np.searchsorted(self.host, np.arange(n_hosts + 1)).astype(np.int64)

    def affected_masks(self) -> np.ndarray:
        masks = np.array([sum(1 << M[m] for m in ANOMALY_KINDS[k].affects) for k in self.kind_names],
                         dtype=np.int64)
        return masks[self.kind] if self.n else np.zeros(0, np.int64)

    def primary_metrics(self) -> np.ndarray:
        prim = np.array([M[ANOMALY_KINDS[k].primary] for k in self.kind_names], dtype=np.int64)
        return prim[self.kind] if self.n else np.zeros(0, np.int64)


def plan_events(config: SimConfig, population: Population, n_events: int, n_steps: int,
                seed: int, interval_s: float, stream: tuple[int, ...] = ()) -> EventPlan:
    """Place exactly `n_events` events on the population's hosts over `n_steps` steps.

    `stream` extends the plan's SeedSequence spawn key, giving each time chunk of a sharded job a
    plan of its own (the default, empty, is the plan of an unsharded run).
    """
    kind_names = tuple(a.kind for a in config.anomalies)
    if n_events == 0:
        return EventPlan(*(np.zeros(0, np.int64) for _ in range(4)), np.zeros(0),
                         np.zeros(0, np.int64), np.zeros((0, N_CHANNELS)), kind_names)
    n_hosts = population.n_hosts
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(EVENT_STREAM, *stream)))
    eligible = kind_hosts(config, population)
    shares = np.array([a.share if eligible[k].any() else 0.0 for k, a in enumerate(config.anomalies)])
    if shares.sum() <= 0:
        raise SimulatorError(f"{config.source}: anomalies: no anomaly kind can happen on the hosts' profiles "
                             f"({', '.join(sorted(set(np.array(population.profile_names)[population.profile])))})")
    kind, host = _assign_hosts(exact_counts(shares, n_events), eligible, rng)
    lo = np.array([a.duration_minutes[0] for a in config.anomalies])[kind]
    hi = np.array([a.duration_minutes[1] for a in config.anomalies])[kind]
    minutes = np.exp(np.log(lo) + rng.random(n_events) * (np.log(hi) - np.log(lo)))
    length = np.clip(np.round(minutes * 60.0 / interval_s), 1, n_steps).astype(np.int64)
    s_lo = np.array([a.severity[0] for a in config.anomalies])[kind]
    s_hi = np.array([a.severity[1] for a in config.anomalies])[kind]
    severity = s_lo + rng.random(n_events) * (s_hi - s_lo)
    start = _place(host, length, n_hosts, n_steps, rng)
    shape_u = rng.random((n_events, 4))
    order = np.lexsort((start, host))
    host, kind, start, length, severity, shape_u = (a[order] for a in (host, kind, start, length, severity, shape_u))
    profile_row = np.cumsum(length) - length
    profiles = np.zeros((int(length.sum()), N_CHANNELS))
    rows = np.arange(len(profiles))
    owner = np.repeat(np.arange(n_events), length)
    for k, name in enumerate(kind_names):
        sel = np.flatnonzero(kind == k)
        if not len(sel):
            continue
        batch = EventBatch(steps=length[sel], severity=severity[sel],
                           host_params=population.params[host[sel]], uniform=shape_u[sel],
                           interval_s=interval_s)
        built = ANOMALY_KINDS[name].build(batch, config.anomalies[k].params)
        profiles[rows[np.isin(owner, sel)]] = built
    return EventPlan(host, kind, start, length, severity, profile_row, profiles, kind_names)


def kind_hosts(config: SimConfig, population: Population) -> np.ndarray:
    """bool[kinds, hosts]: which hosts each anomaly kind can happen on (its configured profiles)."""
    names = population.profile_names
    allowed = np.array([[name in a.profiles for name in names] for a in config.anomalies], bool)
    return allowed[:, population.profile] if len(names) else np.zeros((len(config.anomalies), 0), bool)


def _assign_hosts(counts: np.ndarray, eligible: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kind, host) of every event: each kind's events on its eligible hosts, spread so that the
    busiest host has as few events as possible.

    Kinds are placed one after another, those with the fewest eligible hosts first; each fills the
    least loaded of its hosts up to a common level (water filling), ties broken at random.
    """
    load = np.zeros(eligible.shape[1], np.int64)
    tiebreak = rng.random(eligible.shape[1])
    kinds, hosts = [], []
    for k in np.lexsort((np.arange(len(counts)), eligible.sum(axis=1))):
        n = int(counts[k])
        if n == 0:
            continue
        cand = np.flatnonzero(eligible[k])
        add = _water_fill(load[cand], n, tiebreak[cand])
        load[cand] += add
        kinds.append(np.full(n, k, np.int64))
        hosts.append(rng.permutation(np.repeat(cand, add)))
    kind, host = np.concatenate(kinds), np.concatenate(hosts)
    order = rng.permutation(len(kind))
    return kind[order], host[order]


def _water_fill(load: np.ndarray, n: int, tiebreak: np.ndarray) -> np.ndarray:
    """Counts adding up to n that raise the lowest loads first: every host ends at level L-1 or L
    (or above it if it started there), the hosts taking the last units picked by `tiebreak`."""
    lo, hi = int(load.min()), int(load.min()) + n  # need(hi) >= n
    while lo < hi:  # the smallest level L with need(L) = sum(max(0, L - load)) >= n
        mid = (lo + hi) // 2
        if np.maximum(mid - load, 0).sum() >= n:
            hi = mid
        else:
            lo = mid + 1
    add = np.maximum(lo - 1 - load, 0)
    rest = n - int(add.sum())
    at_level = np.flatnonzero(load + add == lo - 1)
    add[at_level[np.argsort(tiebreak[at_level], kind="stable")[:rest]]] += 1
    return add


def _place(host: np.ndarray, length: np.ndarray, n_hosts: int, n_steps: int,
           rng: np.random.Generator) -> np.ndarray:
    """Random starts; disjoint within a host (stars and bars) when the host has room."""
    n = len(host)
    per_host_len = np.bincount(host, weights=length + GAP_STEPS, minlength=n_hosts)
    free = n_steps + GAP_STEPS - per_host_len  # room left after all windows and gaps
    order = np.lexsort((rng.random(n), host))   # random order of events within each host
    h_sorted, len_sorted = host[order], length[order]
    step = len_sorted + GAP_STEPS
    csum = np.cumsum(step) - step
    first = np.searchsorted(h_sorted, h_sorted)  # index of the host's first event
    before = csum - csum[first]                  # total window+gap of earlier events on the host
    offsets = rng.random(n) * np.maximum(free[h_sorted] + 1, 1)
    offsets = np.floor(offsets[np.lexsort((offsets, h_sorted))])
    disjoint = offsets + before
    overlapping = np.floor(rng.random(n) * (n_steps - len_sorted + 1))
    start_sorted = np.where(free[h_sorted] >= 0, disjoint, overlapping).astype(np.int64)
    start = np.empty(n, np.int64)
    start[order] = start_sorted
    return start
