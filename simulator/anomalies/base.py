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
    uniform: np.ndarray      # float64[n, 4]: per-event uniforms for shape choices
    interval_s: float

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

    def __post_init__(self):
        if not self.names or self.explain is None:
            raise ValueError(f"anomaly kind {self.name}: needs names (how an answer may name it) and explain "
                             "(the phrasings of its explanation)")
        if self.name in self.consequences:
            raise ValueError(f"anomaly kind {self.name}: a kind is not its own consequence")
        unknown = [m for m in self.affects if m not in METRICS]
        if unknown or self.primary not in self.affects:
            raise ValueError(f"anomaly kind {self.name}: bad metrics {unknown or self.primary}")
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


def rise_hold_fall(t_rel: np.ndarray, steps: np.ndarray, rise: np.ndarray, fall: np.ndarray) -> np.ndarray:
    """0..1 envelope: linear rise over `rise` steps, hold, linear fall over the last `fall` steps."""
    up = np.minimum(1.0, (t_rel + 1) / np.maximum(rise, 1))
    down = np.minimum(1.0, (steps - t_rel) / np.maximum(fall, 1))
    return np.minimum(up, down)
