"""Incident cases for root-cause-analysis tools: one folder per incident, RCAEval-like.

`write_cases(folder, traces, events, logs, alerts, seed=...)` writes, for every anomaly event and
for a share of no-fault windows mixed in:

    <folder>/cases.csv                      one row per case: name, label, kind, host, event, window
    <folder>/<case>/data.csv                the metrics window: `time` (unix seconds), then one column
                                            per host and metric, `<hostname>_<metric>` (the faulty
                                            host and `context_hosts` others)
    <folder>/<case>/logs.csv                the log lines of those hosts in the window
    <folder>/<case>/alerts.csv              the alerts of those hosts firing in the window
    <folder>/<case>/inject_time.txt         the fault's start, unix seconds (fault cases only)
    <folder>/<case>/case.json               root cause: kind, host, primary and affected metrics,
                                            event id, start and end; label "fault" or "normal"

as RCAEval's cases hold `data.csv`, `logs.csv` and `inject_time.txt` (RE1/RE2).  Every file is
written atomically; the no-fault windows come from SeedSequence(seed, (CASES_STREAM,)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import polars as pl

from datasafe import atomic_path, atomic_write_bytes, output_folder_problem

from .catalogue import METRICS
from .errors import SimulatorError

CASES_STREAM = 18          # SeedSequence spawn key of the no-fault windows and context hosts
CASE_GLOBS = ("cases.csv",)
NORMAL_DRAWS = 50          # candidate windows drawn per no-fault case wanted


def _hostname(host: int) -> str:
    return f"cn{int(host):05d}"


def write_cases(folder: str | Path, traces: pl.DataFrame, events: pl.DataFrame, logs: pl.DataFrame,
                alerts: pl.DataFrame, *, seed: int, no_fault_share: float = 0.2, context_hosts: int = 3,
                before_minutes: float = 60.0, after_minutes: float = 30.0) -> pl.DataFrame:
    """Write one case folder per event and the no-fault cases; return the case index (cases.csv)."""
    if not (isinstance(no_fault_share, (int, float)) and 0.0 <= no_fault_share < 1.0):
        raise SimulatorError(f"no_fault_share: must be in [0, 1), got {no_fault_share!r}")
    if isinstance(context_hosts, bool) or not isinstance(context_hosts, int) or context_hosts < 0:
        raise SimulatorError(f"context_hosts: must be a whole number >= 0, got {context_hosts!r}")
    if not (before_minutes >= 0 and after_minutes >= 0):
        raise SimulatorError("before_minutes, after_minutes: must be >= 0")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not (folder / "cases.csv").is_file():
        raise SimulatorError(f"{folder}: not empty and holds no cases.csv; refusing to write cases there")
    problem = output_folder_problem(folder, CASE_GLOBS)
    if problem:
        raise SimulatorError(f"{folder}: {problem}")
    traces = traces.sort("host", "step")
    hosts = traces["host"].unique(maintain_order=True).to_numpy().astype(np.int64)
    steps = traces["step"].unique(maintain_order=True)
    t0, t1 = int(steps.min()), int(steps.max()) + 1
    ts = traces["timestamp"].cast(pl.Datetime("ms", "UTC")).cast(pl.Int64)
    dt_ms = int(ts[1] - ts[0]) if len(steps) > 1 else 300_000
    step0_ms = int(ts[0])
    before, after = int(np.ceil(before_minutes * 60000 / dt_ms)), int(np.ceil(after_minutes * 60000 / dt_ms))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(CASES_STREAM,)))
    ev = events.filter(pl.col("host").is_in(hosts.tolist())).sort("event_id")
    cases = _fault_cases(ev, before=before, after=after, t0=t0, t1=t1)
    n_normal = int(round(len(cases) * no_fault_share / (1.0 - no_fault_share))) if len(cases) else 0
    cases += _normal_cases(ev, hosts, n_normal, before=before, after=after, t0=t0, t1=t1, rng=rng)
    rows = []
    for i, case in enumerate(cases):
        others = rng.permutation(hosts[hosts != case["host"]])[:context_hosts]
        case_hosts = [int(case["host"]), *sorted(int(h) for h in others)]
        name = (f"case-{i:05d}-{case['kind'] or 'normal'}-{_hostname(case['host'])}")
        _write_case(folder / name, case, case_hosts, traces=traces, logs=logs, alerts=alerts, dt_ms=dt_ms,
                    step0_ms=step0_ms, t0=t0)
        rows.append({"case": name, "label": case["label"], "kind": case["kind"], "host": int(case["host"]),
                     "event_id": case["event_id"], "window_start_step": case["lo"],
                     "window_end_step": case["hi"],
                     "inject_time": _unix_s(case["start"], dt_ms, step0_ms, t0) if case["event_id"] is not None
                     else None})
    index = pl.DataFrame(rows, schema={"case": pl.Utf8, "label": pl.Utf8, "kind": pl.Utf8, "host": pl.Int64,
                                       "event_id": pl.Int64, "window_start_step": pl.Int64,
                                       "window_end_step": pl.Int64, "inject_time": pl.Int64})
    with atomic_path(folder / "cases.csv") as tmp:
        index.write_csv(tmp)
    return index


def _unix_s(step: int, dt_ms: int, step0_ms: int, t0: int) -> int:
    return (step0_ms + (step - t0) * dt_ms) // 1000


def _fault_cases(ev: pl.DataFrame, *, before: int, after: int, t0: int, t1: int) -> list[dict]:
    return [{"label": "fault", "kind": r["kind"], "host": r["host"], "event_id": r["event_id"],
             "start": r["start_step"], "end": r["end_step"], "primary_metric": r["primary_metric"],
             "affected_metrics": r["affected_metrics"],
             "lo": max(t0, r["start_step"] - before), "hi": min(t1, r["end_step"] + after)}
            for r in ev.iter_rows(named=True)]  # one row per event, not per line or sample


def _normal_cases(ev: pl.DataFrame, hosts: np.ndarray, n: int, *, before: int, after: int, t0: int, t1: int,
                  rng: np.random.Generator) -> list[dict]:
    """`n` windows (as long as a median event's window) on hosts with no event in or near them."""
    if n == 0:
        return []
    length = int(np.median((ev["end_step"] - ev["start_step"]).to_numpy())) + before + after if len(ev) else 24
    length = max(1, min(length, t1 - t0))
    draws = n * NORMAL_DRAWS
    host = hosts[rng.integers(len(hosts), size=draws)]
    lo = t0 + rng.integers(t1 - t0 - length + 1, size=draws)
    free = np.ones(draws, bool)
    e_host = ev["host"].to_numpy()
    e_lo, e_hi = ev["start_step"].to_numpy() - before, ev["end_step"].to_numpy() + after
    for h, a, b in zip(e_host, e_lo, e_hi):   # one pass per event, vectorised over the candidates
        free &= ~((host == h) & (lo < b) & (lo + length > a))
    picked = np.flatnonzero(free)[:n]
    if len(picked) < n:
        raise SimulatorError(f"no_fault_share: room for {len(picked)} no-fault windows, {n} wanted; "
                             "lower the share or simulate longer traces")
    return [{"label": "normal", "kind": None, "host": int(host[j]), "event_id": None, "start": None, "end": None,
             "primary_metric": None, "affected_metrics": None, "lo": int(lo[j]), "hi": int(lo[j]) + length}
            for j in picked]


def _write_case(path: Path, case: dict, case_hosts: list[int], *, traces: pl.DataFrame, logs: pl.DataFrame,
                alerts: pl.DataFrame, dt_ms: int, step0_ms: int, t0: int) -> None:
    lo, hi = case["lo"], case["hi"]
    window = traces.filter(pl.col("host").is_in(case_hosts) & (pl.col("step") >= lo) & (pl.col("step") < hi))
    wide = None
    for h in case_hosts:
        part = window.filter(pl.col("host") == h).select(
            (pl.col("timestamp").dt.epoch("s")).alias("time"),
            *[pl.col(m).alias(f"{_hostname(h)}_{m}") for m in METRICS])
        wide = part if wide is None else wide.join(part, on="time", how="left", maintain_order="left")
    t_lo = pl.lit(step0_ms + (lo - t0) * dt_ms - dt_ms).cast(pl.Datetime("ms", "UTC"))
    t_hi = pl.lit(step0_ms + (hi - 1 - t0) * dt_ms).cast(pl.Datetime("ms", "UTC"))
    case_logs = logs.filter(pl.col("host").is_in(case_hosts) & (pl.col("timestamp") > t_lo)
                            & (pl.col("timestamp") <= t_hi)).select(
        (pl.col("timestamp").dt.epoch("ms") / 1000.0).alias("time"),
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"), "host",
        pl.col("source").cast(pl.Utf8), pl.col("severity").cast(pl.Utf8), pl.col("template_id").cast(pl.Utf8),
        "message", "event_id")
    case_alerts = alerts.filter(pl.col("host").is_in(case_hosts) & (pl.col("fired_step") < hi)
                                & (pl.col("resolved_step").is_null() | (pl.col("resolved_step") > lo))).with_columns(
        pl.col("fired_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ"), pl.col("resolved_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path.mkdir(parents=True, exist_ok=True)
    for name, frame in (("data.csv", wide), ("logs.csv", case_logs), ("alerts.csv", case_alerts)):
        with atomic_path(path / name) as tmp:
            frame.write_csv(tmp)
    meta = {"label": case["label"], "root_cause": None}
    if case["event_id"] is not None:
        inject = _unix_s(case["start"], dt_ms, step0_ms, t0)
        atomic_write_bytes(path / "inject_time.txt", f"{inject}\n".encode())
        meta["root_cause"] = {
            "kind": case["kind"], "host": _hostname(case["host"]), "event_id": case["event_id"],
            "primary_metric": case["primary_metric"],
            "indicator": f"{_hostname(case['host'])}_{case['primary_metric']}",
            "affected_metrics": case["affected_metrics"].split(", "),
            "start_unix_s": inject, "end_unix_s": _unix_s(case["end"], dt_ms, step0_ms, t0)}
    meta.update(hosts=[_hostname(h) for h in case_hosts], window_start_unix_s=_unix_s(lo, dt_ms, step0_ms, t0),
                window_end_unix_s=_unix_s(hi, dt_ms, step0_ms, t0), interval_s=dt_ms / 1000.0)
    atomic_write_bytes(path / "case.json", orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def read_case(path: str | Path) -> dict:
    """A case folder written by `write_cases`, as pandas frames (as RCA tools load it) and its metadata."""
    import pandas as pd

    path = Path(path)
    out = {"data": pd.read_csv(path / "data.csv"), "logs": pd.read_csv(path / "logs.csv"),
           "alerts": pd.read_csv(path / "alerts.csv"), "meta": orjson.loads((path / "case.json").read_bytes())}
    inject = path / "inject_time.txt"
    out["inject_time"] = int(inject.read_text().strip()) if inject.exists() else None
    return out


__all__ = ["write_cases", "read_case", "CASES_STREAM"]


def simulate_cases(folder: str | Path, hosts: int, steps: int, *, seed: int | None = None, config=None,
                   anomalies: int | None = None, anomaly_share: float | None = None, interval_s: float | None = None,
                   no_fault_share: float = 0.2, log_files: bool = False, workers: int | None = None) -> dict:
    """The whole incident job: simulate the hosts' traces (`anomalies` events, or events covering about
    `anomaly_share` of the points), their logs and alerts, write the case folders (and with `log_files`,
    the plain log files per host and source under `<folder>/logs/`).  Returns the case index, the alert
    result, the number of log lines and events, and the share of anomalous points."""
    from .alerts import evaluate_alerts
    from .api import checked_seed, _resolve, simulate
    from .logs import simulate_logs, write_log_files

    if not (isinstance(no_fault_share, (int, float)) and 0.0 <= no_fault_share < 1.0):
        raise SimulatorError(f"--no-fault-share: must be in [0, 1), got {no_fault_share!r}")
    cfg = _resolve(config)
    seed = checked_seed(cfg, seed)
    traces, events = simulate(hosts, steps, config=cfg, seed=seed, anomalies=anomalies, anomaly_share=anomaly_share,
                              interval_s=interval_s, workers=workers)
    logs = simulate_logs(traces, events, seed=seed, interval_s=interval_s)
    alerts = evaluate_alerts(traces, logs, events, interval_s=interval_s)
    index = write_cases(folder, traces, events, logs, alerts.alerts, seed=seed, no_fault_share=no_fault_share)
    if log_files:
        write_log_files(logs, Path(folder) / "logs")
    return {"cases": index, "alerts": alerts, "log_lines": len(logs), "events": len(events),
            "anomaly_share": float(traces["is_anomaly"].mean()) if len(traces) else 0.0}
