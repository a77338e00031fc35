"""Pick training samples from traces: one point inside each event, and normal points elsewhere."""

from __future__ import annotations

import numpy as np
import polars as pl

from ._numba import jit
from .catalogue import METRICS, N_METRICS
from .config import MetricSpec
from .engine import Traces

SAMPLE_STREAM = 3  # SeedSequence spawn key of sample selection


@jit
def pick_event_points(labels, ev_host, ev_start, ev_len, ev_id, ev_primary, ev_skip, u, t0):
    """Per event, a step where its primary metric carries its label (else any metric does), drawn
    among those at least ev_skip[e] steps after its start (among all of them where none is); -1 if
    none."""
    n_ev = ev_host.shape[0]
    n_steps = labels.shape[2]
    out = np.full(n_ev, -1, dtype=np.int64)
    for e in range(n_ev):
        h = ev_host[e]
        for skip in (ev_skip[e], 0):
            for pass_ in range(2):
                count = 0
                for j in range(skip, ev_len[e]):
                    i = ev_start[e] - t0 + j
                    if 0 <= i < n_steps and _hit(labels, h, i, ev_id[e], ev_primary[e], pass_):
                        count += 1
                if count == 0:
                    continue
                pick = int(u[e] * count)
                for j in range(skip, ev_len[e]):
                    i = ev_start[e] - t0 + j
                    if 0 <= i < n_steps and _hit(labels, h, i, ev_id[e], ev_primary[e], pass_):
                        if pick == 0:
                            out[e] = t0 + i
                            break
                        pick -= 1
                break
            if out[e] >= 0:
                break
    return out


@jit
def _hit(labels, h, i, event, primary, any_metric):
    if not any_metric:
        return labels[primary, h, i] == event
    for m in range(labels.shape[0]):
        if labels[m, h, i] == event:
            return True
    return False


@jit
def normal_mask(labels):
    """True where no metric of the host is anomalous."""
    n_metrics, n_hosts, n_steps = labels.shape
    out = np.ones((n_hosts, n_steps), dtype=np.bool_)
    for m in range(n_metrics):
        for h in range(n_hosts):
            for i in range(n_steps):
                if labels[m, h, i] >= 0:
                    out[h, i] = False
    return out


def select_points(traces: Traces, events: pl.DataFrame, n_normal: int, *, rng: np.random.Generator,
                  hard_share: float = 0.0, skip_steps: dict[str, int] | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(host, step, event_id or -1, hard negative?) of every sample: events first, each taken at
    least `skip_steps[kind]` steps after its start where it lasts that long (`sample_steps`), then
    normal points, `round(hard_share * n_normal)` of them among each host's busiest healthy moments
    (`hard_negatives`)."""
    skip = skip_steps or {}
    ev_skip = events["kind"].replace_strict(list(skip), list(skip.values()), default=0,
                                            return_dtype=pl.Int64).to_numpy()
    ev_host = events["host"].to_numpy() - traces.first_host
    ev_step = pick_event_points(
        traces.labels, ev_host.astype(np.int64), events["start_step"].to_numpy(),
        (events["end_step"] - events["start_step"]).to_numpy(), events["event_id"].to_numpy(),
        events["primary_metric"].replace_strict(list(METRICS), list(range(N_METRICS)),
                                                return_dtype=pl.Int64).to_numpy(),
        ev_skip, rng.random(len(events)), traces.t0)
    invisible = events.filter(pl.Series(ev_step < 0))
    if len(invisible):
        raise RuntimeError(f"{len(invisible)} events left no trace (first: {invisible.row(0, named=True)})")
    candidates = np.flatnonzero(normal_mask(traces.labels).ravel())
    if n_normal > len(candidates):
        raise ValueError(f"only {len(candidates)} normal points for {n_normal} normal samples")
    n_hard = int(round(hard_share * n_normal))
    chosen = np.sort(rng.choice(candidates, size=n_normal - n_hard, replace=False))
    hard = hard_negatives(traces, np.setdiff1d(candidates, chosen), n_hard, rng) if n_hard else chosen[:0]
    normal = np.concatenate([chosen, hard])
    host = np.concatenate([ev_host, normal // traces.n_steps])
    step = np.concatenate([ev_step, traces.t0 + normal % traces.n_steps])
    event = np.concatenate([events["event_id"].to_numpy(), np.full(n_normal, -1, np.int64)])
    is_hard = np.concatenate([np.zeros(len(ev_host) + len(chosen), bool), np.ones(len(hard), bool)])
    return host, step, event, is_hard


def sample_steps(config, interval_s: float) -> dict[str, int]:
    """Steps after an event's start before its sample may be taken, per kind (the config's
    `sample_after_minutes`: where the anomaly becomes visible in what the sample carries)."""
    return {a.kind: int(np.ceil(a.sample_after_minutes * 60.0 / interval_s - 1e-9))
            for a in config.anomalies if a.sample_after_minutes > 0}


HARD_POOL = 0.05  # hard negatives are drawn from this top share of a block's healthy points


def hard_negatives(traces: Traces, candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` healthy points (flat host*steps indices) among the HARD_POOL share of `candidates` that
    look most like anomalies: the furthest above their host's mean (busy) in its own standard
    deviations, on the metric where that is largest; a deviation counts at least 5 % of the mean (and
    0.1), so a nearly flat metric's jitter does not look busy."""
    values = traces.values.reshape(traces.values.shape[0], -1)[:, candidates]
    host = candidates // traces.n_steps
    mean = traces.values.mean(axis=2)[:, host]
    std = np.maximum(np.maximum(traces.host_std[:, host], 0.05 * np.abs(mean)), 0.1)
    score = ((values - mean) / std).max(axis=0)
    pool = max(n, int(np.ceil(HARD_POOL * len(candidates))))
    top = candidates[np.argsort(-score, kind="stable")[:pool]]
    return np.sort(rng.choice(top, size=n, replace=False))


def gather(traces: Traces, host: np.ndarray, step: np.ndarray, metrics: tuple[MetricSpec, ...],
           *, prefix: str = "", base: bool = False) -> dict[str, pl.Series]:
    """Metric values at (host, step) points as typed columns (integers for integer metrics)."""
    source = traces.base if base else traces.values
    cols = {}
    for m, spec in enumerate(metrics):
        v = source[m, host, step - traces.t0]
        cols[prefix + spec.name] = pl.Series(prefix + spec.name, v.astype(np.int32) if spec.integer else v)
    return cols


def with_log_excerpts(samples: pl.DataFrame, excerpts: pl.DataFrame | None) -> pl.DataFrame:
    """The samples with the log excerpt of their context window (`log_total`, `log_lines`: a run with
    logs, see `logs.sample_log_excerpts`), matched on host and step; unchanged without excerpts. Two
    samples at one host and step (events of a host overlap) share one excerpt: each keeps its row."""
    if excerpts is None:
        return samples
    once = excerpts.unique(["host", "step"], keep="first", maintain_order=True)
    return samples.join(once, on=["host", "step"], how="left", maintain_order="left")
