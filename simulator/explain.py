"""Write each sample's explanation from what the sample itself shows, as column operations.

Every number in an explanation is computed from the sample's own fields: its snapshot, its context
(the last readings at the native interval, the snapshot last) and its history (hourly means), and
the host's facts. Nothing comes from the trace without the anomaly or from the event table: a model
trained on these texts can only learn to say what it can see.

- "usual" is the metric's median over the previous hours of the history (the hour that ends at the
  snapshot left out), or over the earlier readings of the context when fewer than
  MIN_HISTORY_HOURS hours are there; the text says which span it is.
- the snapshot is "off" when it is further from usual than OFF_SPREADS median absolute deviations
  of the values usual is the median of; an earlier reading is off when it is further from usual than
  half the snapshot's distance. How long the metric has been off is stated only when the context
  shows the change: "over the last N minutes"
  (N from the first off reading of the trailing run to the snapshot), "throughout the last N
  minutes" when every reading of the context is off, nothing when the snapshot is not off.
- a comparison says "up from", "down from" or "the same as", by the values as printed.

Several phrasings per kind are picked by a per-sample variant.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .anomalies import ANOMALY_KINDS
from .catalogue import METRICS
from .context import evidence_levels
from .phrases import AGO, RUN, SPAN, SPAN_UNIT, SPREADS, USUAL, Phrases

N_VARIANTS = 3
MIN_HISTORY_HOURS = 6
OFF_SPREADS = 3.0  # a snapshot further from usual than this many median absolute deviations is "off"
MAX_SPREADS = 1000.0
FEATURE_COLUMNS = [prefix + m for prefix in (USUAL, SPAN, SPAN_UNIT, AGO, RUN, SPREADS) for m in METRICS]


# ---------------------------------------------------------------------------- what the sample shows
def evidence_features(samples: pl.DataFrame, interval_s: float, windows=None) -> dict[str, pl.Series]:
    """Per metric: usual level and its span, the first context reading, and the off run in minutes.
    `windows` (a `context.Windows` of the same rows, NaN where the columns are null) spares reading
    the ctx_/hist_ columns back (`export.window_arrays`)."""
    if windows is None:
        from .export import window_arrays

        windows = window_arrays(samples)
    minutes = interval_s / 60.0
    fine = _metric_major(windows.fine)
    hist = _metric_major(windows.coarse)[:, :, :-1]
    now = np.stack([samples[m].to_numpy().astype(np.float64) for m in METRICS])
    usual, spread, hours, readings, from_history, run = evidence_levels(fine, hist, now, MIN_HISTORY_HOURS, minutes,
                                                                        OFF_SPREADS)
    cols: dict[str, pl.Series] = {}
    for i, m in enumerate(METRICS):
        cols[USUAL + m] = pl.Series(USUAL + m, usual[i])
        cols[SPAN + m] = pl.Series(SPAN + m, np.where(from_history[i], hours[i], readings[i] * minutes).astype(np.int64))
        cols[SPAN_UNIT + m] = pl.Series(from_history[i]).replace_strict({True: "hours", False: "minutes"},
                                                                         return_dtype=pl.Utf8).alias(SPAN_UNIT + m)
        cols[AGO + m] = pl.Series(AGO + m, fine[i, :, 0].astype(np.float64))
        cols[RUN + m] = pl.Series(RUN + m, run[i])
        cols[SPREADS + m] = pl.Series(SPREADS + m, spreads_off(now[i], usual[i], spread[i]))
    return cols


def _metric_major(window: np.ndarray) -> np.ndarray:
    """[n, M, k] as float32 [M, n, k] (a view when the array is metric-major already)."""
    return np.ascontiguousarray(np.transpose(window, (1, 0, 2)), dtype=np.float32)


def spreads_off(now: np.ndarray, usual: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """How far the snapshot is from usual, in spreads (capped at MAX_SPREADS; a flat past's spread is
    taken as 1e-6 of the level's scale, so any change of a flat metric reads as far off)."""
    distance = np.abs(now - usual)
    floor = np.maximum(spread, 1e-6 * np.maximum(np.abs(usual), 1.0))
    return np.minimum(distance / floor, MAX_SPREADS)


def visibility(samples: pl.DataFrame, anomalous_prefix: str) -> dict[str, pl.Expr]:
    """Targets that say how plainly an anomaly sample shows its event: `visible` (some metric the
    event moved at that point is off its usual level, as the explanation defines it) and
    `evidence_spreads` (the largest distance from usual, in spreads, among those metrics)."""
    moved = [pl.col(anomalous_prefix + m) for m in METRICS]
    off = [pl.col(anomalous_prefix + m) & (pl.col(RUN + m) != -2) for m in METRICS]
    spreads = [pl.when(pl.col(anomalous_prefix + m)).then(pl.col(SPREADS + m)) for m in METRICS]
    is_anomaly = pl.col("kind").is_not_null()
    return {"visible": pl.when(is_anomaly).then(pl.any_horizontal(off)),
            "evidence_spreads": pl.when(is_anomaly & pl.any_horizontal(moved))
            .then(pl.max_horizontal(spreads).round(2))}


# ---------------------------------------------------------------------------- texts
def kind_phrasings(minutes_shown: float) -> dict[str, tuple[pl.Expr, ...]]:
    """Each kind's N_VARIANTS phrasings (its module's `explain`); `minutes_shown` is the time the
    context spans."""
    say = Phrases(minutes_shown)
    return {name: tuple(kind.explain(say)) for name, kind in ANOMALY_KINDS.items()}


def normal_phrasings() -> tuple[pl.Expr, ...]:
    say = Phrases(0.0)
    return (
        say.text("Healthy: CPU {}, memory {}, load {} on {} cores, heap {} with GC {} of the time.",
                 say.now("cpu_usage"), say.now("memory_usage"), say.number("load_average", 2), say.value("cores"),
                 say.now("java_heap_usage"), say.now("java_gc_time", 2)),
        say.text("Normal operation on {}: active jobs {}, disk {} used, network {} in at {} latency, "
                 "{} vemkd processes.", say.host(), say.value("spectrum_active_jobs"), say.now("disk_usage", 2),
                 say.now("network_in_mbps"), say.now("network_latency_ms", 2), say.value("vemkd_process_count")),
        say.text("No anomaly: cpu_usage is {}, {}; memory is {}.", say.now("cpu_usage"), say.vs_usual("cpu_usage"),
                 say.now("memory_usage")),
    )


def explanations(samples: pl.DataFrame, kinds: list[str], interval_s: float, context_steps: int) -> pl.Series:
    """Each sample's explanation: its kind's phrasing (the normal ones for a normal sample) picked by its
    `variant` (the first phrasing for a variant the kind lacks), over the `evidence_features` columns and
    the host facts. Each phrasing is computed on the rows that pick it only (the phrasings are
    row-wise): the rows grouped by (kind, variant), put back in the rows' order. Null for a kind not in
    `kinds`."""
    phrasings = kind_phrasings((context_steps - 1) * interval_s / 60.0)
    phrasings = [normal_phrasings()] + [phrasings[kind] for kind in kinds]
    # group: the phrasings' index (0 normal, k + 1 the k-th kind, len(kinds) + 1 any other kind: a null
    # text) times `width`, plus the variant (`_pick`'s: the first phrasing for a variant it lacks)
    kind = np.where(samples["kind"].is_null().to_numpy(), 0,
                    samples["kind"].replace_strict({k: i + 1 for i, k in enumerate(kinds)}, default=len(kinds) + 1,
                                                   return_dtype=pl.Int64).to_numpy())
    counts = np.array([len(p) for p in phrasings] + [1])
    width = int(counts.max())
    variant = samples["variant"].cast(pl.Int64).to_numpy()
    variant = np.where((variant >= 0) & (variant < counts[kind]), variant, 0)
    group = kind * width + variant
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(len(phrasings) * width + 1))
    used = sorted({c for variants in phrasings for e in variants for c in e.meta.root_names()})
    samples = samples.select(used)  # the columns the texts read, gathered once a group
    parts = []
    for g in range(len(phrasings) * width):
        rows = order[bounds[g]:bounds[g + 1]]
        if len(rows):
            expr = phrasings[g // width][g % width]
            parts.append(samples[rows].select(expr.cast(pl.Utf8).alias("explanation")).to_series())
    rest = len(samples) - bounds[-1]  # rows of kinds not in `kinds`
    parts.append(pl.Series("explanation", [None] * rest, dtype=pl.Utf8))
    placed = pl.concat(parts)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return placed.gather(position)

