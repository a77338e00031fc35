"""What every anomaly kind is: parameters, the metrics it moves, and a profile builder.

A kind turns each of its events (duration, severity, the host's parameters) into per-step inputs
on the perturbation channels of `catalogue.CHANNELS`, for all its events at once (column
operations, no loop per event).  The kernel then runs the host with and without those inputs;
a metric point is labelled where the two runs differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .._numba import jit
from ..catalogue import METRICS, N_CHANNELS

if TYPE_CHECKING:
    import polars as pl

    from ..phrases import Phrases


def param(default: float, lo: float, hi: float, doc: str):
    """A kind parameter with its default and allowed range (checked when the config loads)."""
    return dataclasses.field(default=default, metadata={"lo": lo, "hi": hi, "doc": doc})


class KindParams:
    """Mixin for a kind's frozen parameter dataclass."""

    @classmethod
    def bounds(cls) -> dict[str, tuple[float, float]]:
        return {f.name: (f.metadata["lo"], f.metadata["hi"]) for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class EventBatch:
    """The events of one kind, as columns: what a profile builder reads."""

    steps: np.ndarray        # int64[n]: window length in steps (>= 1)
    severity: np.ndarray     # float64[n] in [0, 1]
    host_params: np.ndarray  # float64[n, N_PARAMS]: the parameters of each event's host
    uniform: np.ndarray      # float64[n, 4 + SHAPE_UNIFORMS]: per-event uniforms for shape choices (the kind's
                             # own in columns 0-3, the common shape's in U_ONSET..U_FIRST)
    interval_s: float
    noise: np.ndarray        # float64[sum(steps)]: a standard normal per profile row (the fluctuation)

    @property
    def n(self) -> int:
        return len(self.steps)

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(event index, step within the window, window length) for every profile row."""
        owner = np.repeat(np.arange(self.n), self.steps)
        starts = np.cumsum(self.steps) - self.steps
        t_rel = np.arange(int(self.steps.sum()), dtype=np.int64) - np.repeat(starts, self.steps)
        return owner, t_rel, self.steps[owner]

    def empty_profile(self) -> np.ndarray:
        return np.zeros((int(self.steps.sum()), N_CHANNELS), dtype=np.float64)


SHAPE_UNIFORMS = 3                  # per-event uniforms the common shape draws on
U_ONSET, U_RECOVERY, U_FIRST = 4, 5, 6


Builder = Callable[[EventBatch, object], np.ndarray]
Explainer = Callable[["Phrases"], tuple["pl.Expr", ...]]


@dataclass(frozen=True)
class AnomalyKind:
    """A registered anomaly kind."""

    name: str
    params: type
    primary: str                    # the metric whose deviation defines "peak deviation"
    affects: tuple[str, ...]        # every metric it may move (primary first)
    build: Builder                  # (EventBatch, params) -> float64[sum(steps), N_CHANNELS]
    gradual: bool = False           # primary metric climbs monotonically over the window
    description: str = ""
    # (metric, level) of a resource the kind fills: a sample's time-to-exhaustion target is the time
    # until the metric first reaches the level (disk full, heap at its maximum); None: no such target
    exhausts: tuple[str, float] | None = None
    names: tuple[str, ...] = ()     # how an answer may name the kind (the verifier of grounded answers)
    explain: Explainer | None = None  # (Phrases) -> the phrasings of its explanation, one per variant
    consequences: tuple[str, ...] = ()  # other kinds an incident of this kind may drive
    # the parts of its events that are sudden by nature, the rest ramping (see `Shape`): "onset" (a
    # crash), "end" (an OOM kill, a file deleted); and whether its body is steady (a dead daemon
    # reports 0) instead of fluctuating
    abrupt: tuple[str, ...] = ()
    steady: bool = False
    # its effect outlasts its inputs through the host's own state (a job queue draining) until the
    # window's end, so the whole window after its first input counts as perturbed
    outlasts_inputs: bool = False

    def __post_init__(self):
        if not self.names or self.explain is None:
            raise ValueError(f"anomaly kind {self.name}: needs names (how an answer may name it) and explain "
                             "(the phrasings of its explanation)")
        if self.name in self.consequences:
            raise ValueError(f"anomaly kind {self.name}: a kind is not its own consequence")
        unknown = [m for m in self.affects if m not in METRICS]
        if unknown or self.primary not in self.affects:
            raise ValueError(f"anomaly kind {self.name}: bad metrics {unknown or self.primary}")
        if not set(self.abrupt) <= {"onset", "end"}:
            raise ValueError(f"anomaly kind {self.name}: abrupt names parts other than onset and end: {self.abrupt}")
        if self.exhausts is not None and self.exhausts[0] not in self.affects:
            raise ValueError(f"anomaly kind {self.name}: exhausts {self.exhausts[0]}, a metric it does not move")


ANOMALY_KINDS: dict[str, AnomalyKind] = {}


def check_consequences(kinds: dict[str, AnomalyKind]) -> None:
    """Every consequence a kind names is a registered kind (checked once all kinds are loaded)."""
    for kind in kinds.values():
        unknown = [k for k in kind.consequences if k not in kinds]
        if unknown:
            raise ValueError(f"anomaly kind {kind.name}: unknown consequences {unknown} (known: {', '.join(kinds)})")


def register(kind: AnomalyKind) -> AnomalyKind:
    if kind.name in ANOMALY_KINDS:
        raise ValueError(f"anomaly kind {kind.name} registered twice")
    ANOMALY_KINDS[kind.name] = kind
    return kind


@dataclass(frozen=True)
class Shape:
    """How a kind's events start, vary and end, as shares of each event's window (drawn per event).

    The window holds the whole incident: an onset ramp, the body with its fluctuation and a recovery
    tail that decays towards the host's normal by the window's last step, after which the host is
    back to normal (the disturbed copy re-synchronised).  So every step an event perturbs lies in its
    window, and the labelled points (where a reported value differs) cover them all.
    """

    onset: tuple[float, float]     # share of the window the onset ramp takes (at least one step)
    recovery: tuple[float, float]  # share of the window the recovery tail takes (at least a step unless (0, 0))
    tail: float                    # level at the window's last step, relative to the peak (recovery > 0)
    sigma: float                   # fluctuation during the event: std of its log
    phi: float                     # its step-to-step persistence (AR(1))


@jit
def _ar1_within_events(noise, t_rel, phi):
    """AR(1) with unit variance, restarted at each event's first row (t_rel == 0)."""
    out = np.empty_like(noise)
    scale = np.sqrt(1.0 - phi * phi)
    for i in range(noise.shape[0]):
        out[i] = noise[i] if t_rel[i] == 0 else phi * out[i - 1] + scale * noise[i]
    return out


def fluctuation(batch: EventBatch, sigma: float, phi: float) -> np.ndarray:
    """A positive factor per profile row, exp(sigma * AR(1)): the event's own variation over time."""
    _, t_rel, _ = batch.positions()
    return np.exp(sigma * _ar1_within_events(batch.noise, t_rel, phi))


def per_event_max(batch: EventBatch, x: np.ndarray) -> np.ndarray:
    """The largest of x over each event's rows, repeated on its rows."""
    starts = np.cumsum(batch.steps) - batch.steps
    return np.repeat(np.maximum.reduceat(x, starts), batch.steps)


def ramp_steps(batch: EventBatch, share: tuple[float, float], column: int, least: int) -> np.ndarray:
    """Per event: a share of its window drawn in `share` (uniform `column`), in whole steps, >= least."""
    drawn = share[0] + (share[1] - share[0]) * batch.uniform[:, column]
    return np.maximum(np.round(drawn * batch.steps), least).astype(np.int64)


def recovery_steps(batch: EventBatch, shape: Shape, onset: np.ndarray) -> np.ndarray:
    """Per event, the steps of its recovery tail: drawn in shape.recovery, leaving at least one step
    between the onset and the tail where the window has room."""
    drawn = ramp_steps(batch, shape.recovery, U_RECOVERY, int(shape.recovery[1] > 0))
    return np.minimum(drawn, np.maximum(batch.steps - onset - 1, 0))


def envelope(batch: EventBatch, shape: Shape) -> np.ndarray:
    """Per profile row, the event's intensity relative to its peak (peak exactly 1 in every event).

    Onset: a linear ramp over the onset steps, whose first step holds only part of its interval
    (the incident begins at a random moment within it).  Recovery: a geometric decay over the last
    steps down to `tail` of the peak at the window's last step.  In between (and on both ramps) the
    event fluctuates by `shape.sigma`; the result is scaled so that each event's largest step is 1,
    which keeps a kind's severity (its peak) as it was."""
    owner, t_rel, steps = batch.positions()
    onset = ramp_steps(batch, shape.onset, U_ONSET, 1)
    recovery = recovery_steps(batch, shape, onset)
    first = 0.4 + 0.6 * batch.uniform[owner, U_FIRST]
    up = np.minimum(1.0, (t_rel + first) / onset[owner])
    into_tail = t_rel - (steps - recovery[owner]) + 1
    down = np.where(into_tail > 0, shape.tail ** (into_tail / np.maximum(recovery[owner], 1)), 1.0)
    level = np.minimum(up, down) * fluctuation(batch, shape.sigma, shape.phi)
    return level / per_event_max(batch, level)


def growth(batch: EventBatch, curve: np.ndarray, sigma: float, phi: float) -> np.ndarray:
    """0..1 per profile row, reaching 1 at each event's last step: a monotone climb along `curve` (the
    kind's cumulative shape, 0..1 per row) whose increments fluctuate by `sigma` (a leak's or a fill's
    rate varies with the load that drives it), so that it never steps back."""
    _, t_rel, _ = batch.positions()
    increments = np.diff(curve, prepend=0.0)
    increments[t_rel == 0] = curve[t_rel == 0]
    increments = np.maximum(increments, 0.0) * fluctuation(batch, sigma, phi)
    done = np.cumsum(increments)
    starts = np.cumsum(batch.steps) - batch.steps
    done -= np.repeat(done[starts] - increments[starts], batch.steps)
    return done / np.maximum(per_event_max(batch, done), 1e-300)
