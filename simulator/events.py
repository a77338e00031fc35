"""The event plan: exactly N anomaly events (host, kind, start, length, severity) as columns.

Each kind's events go only to hosts of the profiles its config entry lists, spread over them.  Events
on one host are placed without overlap while the trace has room (so every event is seen on its own);
when a host is asked for more than fits, its events overlap.  Exactly N events are planned either
way, and exactly N appear in the event table.  Durations are scaled down where a kind's longest event
would span over MAX_EVENT_TRACE_SHARE of the trace; `events_for_share` picks N (and, with few events,
a common duration scale) so that the events cover a share of the trace's points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anomalies import ANOMALY_KINDS, EventBatch
from .anomalies.base import SHAPE_UNIFORMS
from .catalogue import M, N_CHANNELS
from .config import MAX_ANOMALY_SHARE, SimConfig
from .errors import SimulatorError
from .population import Population, exact_counts

EVENT_STREAM = 2   # SeedSequence spawn key of the event plan
GAP_STEPS = 2      # quiet steps kept between events on one host when there is room
MAX_EVENT_TRACE_SHARE = 0.2  # a kind whose longest event would span more of the trace is scaled down to this
SHARE_TRIES = 12             # event counts (then duration scales) tried when sizing a plan to an anomaly share
DURATION_ADJUST = 1.5        # durations may be scaled by 1/1.5..1.5 to meet an anomaly share with few events


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
                *, seed: int, interval_s: float, stream: tuple[int, ...] = (),
                duration_scale: float = 1.0) -> EventPlan:
    """Place exactly `n_events` events on the population's hosts over `n_steps` steps.

    `stream` extends the plan's SeedSequence spawn key, giving each time chunk of a sharded job a
    plan of its own (the default, empty, is the plan of an unsharded run).  `duration_scale`
    multiplies every drawn duration (the same draws otherwise: the plan is the same but for lengths
    and what follows from them).
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
    lo, hi = (bound[kind] for bound in duration_steps(config, interval_s, n_steps))
    drawn = np.exp(np.log(lo) + rng.random(n_events) * (np.log(hi) - np.log(lo)))
    longest = np.minimum(np.maximum(np.round(hi), 1), n_steps)  # a stretch never passes the kind's longest
    length = np.clip(np.round(duration_scale * drawn), 1, longest).astype(np.int64)
    s_lo = np.array([a.severity[0] for a in config.anomalies])[kind]
    s_hi = np.array([a.severity[1] for a in config.anomalies])[kind]
    severity = s_lo + rng.random(n_events) * (s_hi - s_lo)
    start = _place(host, length, n_hosts=n_hosts, n_steps=n_steps, rng=rng)
    shape_u = np.hstack([rng.random((n_events, 4)), rng.random((n_events, SHAPE_UNIFORMS))])
    order = np.lexsort((start, host))
    host, kind, start, length, severity, shape_u = (a[order] for a in (host, kind, start, length, severity, shape_u))
    profile_row = np.cumsum(length) - length
    profiles = np.zeros((int(length.sum()), N_CHANNELS))
    rows = np.arange(len(profiles))
    owner = np.repeat(np.arange(n_events), length)
    noise = rng.standard_normal(len(profiles))  # i.i.d., so drawn in the sorted rows' order
    for k, name in enumerate(kind_names):
        sel = np.flatnonzero(kind == k)
        if not len(sel):
            continue
        mine = rows[np.isin(owner, sel)]
        batch = EventBatch(steps=length[sel], severity=severity[sel],
                           host_params=population.params[host[sel]], uniform=shape_u[sel],
                           interval_s=interval_s, noise=noise[mine])
        profiles[mine] = ANOMALY_KINDS[name].build(batch, config.anomalies[k].params)
    return EventPlan(host, kind, start, length, severity, profile_row, profiles, kind_names)


def duration_steps(config: SimConfig, interval_s: float, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Each kind's (shortest, longest) event in steps: its configured minutes at this interval, scaled
    down (both ends by one factor, so the log-uniform shape is kept) where the longest event would span
    more than MAX_EVENT_TRACE_SHARE of the trace."""
    lo = np.array([a.duration_minutes[0] for a in config.anomalies]) * 60.0 / interval_s
    hi = np.array([a.duration_minutes[1] for a in config.anomalies]) * 60.0 / interval_s
    scale = np.minimum(1.0, MAX_EVENT_TRACE_SHARE * n_steps / hi)
    return lo * scale, hi * scale


def events_for_share(config: SimConfig, population: Population, share: float, n_steps: int, *, seed: int,
                     interval_s: float, stream: tuple[int, ...] = ()) -> EventPlan:
    """The event plan whose windows cover about `share` of the hosts' points.

    The points asked for are round(share x hosts x steps).  The count starts from the expected event
    length (each kind's log-uniform mean in steps, weighted by the kinds' shares) and is refined on the
    plans themselves: the steps where an event perturbs its host (the labelled points but for where a
    metric has not moved yet) are known before any host is simulated.  Then, if a few events still miss,
    their durations are scaled together.  `share` must be in [0, MAX_ANOMALY_SHARE] and ask for at
    least one point.
    """
    target = share_target(share, population.n_hosts * n_steps)
    if target == 0:
        return plan_events(config, population, 0, n_steps, seed=seed, interval_s=interval_s, stream=stream)
    lo, hi = duration_steps(config, interval_s, n_steps)
    mean = np.where(hi > lo * (1 + 1e-9), (hi - lo) / np.log(np.maximum(hi / lo, 1 + 1e-9)), lo)
    eligible = kind_hosts(config, population).any(axis=1)
    weights = np.array([a.share for a in config.anomalies]) * eligible
    expected = float(np.sum(weights * np.maximum(mean, 1.0)) / max(weights.sum(), 1e-300))
    n = max(1, int(round(target / expected)))
    best, tried = None, {}
    for _ in range(SHARE_TRIES):
        plan = plan_events(config, population, n, n_steps, seed=seed, interval_s=interval_s, stream=stream)
        tried[n] = perturbed_points(plan)
        if best is None or abs(tried[n] - target) < abs(tried[best.n] - target):
            best = plan
        n = max(1, int(round(best.n * target / max(tried[best.n], 1.0))))
        if n in tried:  # the estimate repeats itself: try the best count's untried neighbours
            near = [m for m in (best.n - 1, best.n + 1) if m >= 1 and m not in tried]
            if not near:
                break
            n = near[0] if tried[best.n] > target else near[-1]
    # a few events cover the share only roughly: the best count's durations, stretched or shrunk
    # together by up to DURATION_ADJUST, take up the rest
    covered, scale = tried[best.n], 1.0
    for _ in range(SHARE_TRIES):
        if abs(covered - target) <= 0.02 * target:
            break
        scale = float(np.clip(scale * target / max(covered, 1.0), 1 / DURATION_ADJUST, DURATION_ADJUST))
        plan = plan_events(config, population, best.n, n_steps, seed=seed, interval_s=interval_s, stream=stream,
                           duration_scale=scale)
        points = perturbed_points(plan)
        if abs(points - target) >= abs(covered - target):
            break
        best, covered = plan, points
    return best


def share_target(share: float, points: int) -> int:
    """The anomalous points a share of `points` asks for; an error where no plan can meet it."""
    if not 0.0 <= share <= MAX_ANOMALY_SHARE:
        raise SimulatorError(f"--anomaly-share: must be between 0 and {MAX_ANOMALY_SHARE} (above it anomalies are "
                             f"no longer exceptions and a host's events overlap), got {share}")
    target = int(round(share * points))
    if share > 0 and target == 0:
        raise SimulatorError(f"--anomaly-share: {share} of {points:,} points (hosts x steps) is less than one "
                             "anomalous point; ask for a larger share, a longer trace, or --anomaly-share 0")
    return target


def perturbed_points(plan: EventPlan) -> float:
    """Steps of the plan's windows where some perturbation channel is non-zero (a daemon back up before
    its window ends perturbs nothing after), and for a kind whose effect outlasts its inputs (a job
    queue draining), every step of its window from its first input on."""
    active = np.any(plan.profiles != 0.0, axis=1)
    outlasts = np.array([ANOMALY_KINDS[k].outlasts_inputs for k in plan.kind_names], bool)[plan.kind]
    if outlasts.any():
        owner = np.repeat(np.arange(plan.n), plan.length)
        starts = plan.profile_row
        started = np.maximum.accumulate(np.where(active, np.arange(len(active)), -1))
        active |= outlasts[owner] & (started >= starts[owner])
    return float(np.count_nonzero(active))


def kind_hosts(config: SimConfig, population: Population) -> np.ndarray:
    """bool[kinds, hosts]: which hosts each anomaly kind can happen on (its configured profiles)."""
    names = population.profile_names
    allowed = np.array([[name in a.profiles for name in names] for a in config.anomalies], bool)
    return allowed[:, population.profile] if len(names) else np.zeros((len(config.anomalies), 0), bool)


def _assign_hosts(counts: np.ndarray, eligible: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kind, host) of every event: each kind's events on its eligible hosts, spread so that the
    busiest host has as few events as possible.

    Kinds are placed one after another, those with the most eligible hosts first; each fills the
    least loaded of its hosts up to a common level (water filling), ties broken at random.  So a kind
    that can happen anywhere lands on every profile in proportion to its hosts (an idle host is not
    left to the few kinds it allows), and a restricted kind evens out the load within its profiles.
    """
    load = np.zeros(eligible.shape[1], np.int64)
    tiebreak = rng.random(eligible.shape[1])
    kinds, hosts = [], []
    for k in np.lexsort((np.arange(len(counts)), -eligible.sum(axis=1))):
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


def _place(host: np.ndarray, length: np.ndarray, *, n_hosts: int, n_steps: int,
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
