"""Alerts as operators write them, evaluated over simulated traces and logs, matched to the events.

`evaluate_alerts(traces, logs, events)` evaluates the rules of `data_config/alert_rules.yaml` at
every sample instant of every host (column operations on [host, step] arrays), turns each run of a
rule's condition into one alert (fired, resolved), and matches alerts to the anomaly events: a
true alert overlaps an event on its host, a false alarm overlaps none, an event of a kind a rule
`detects` that none of its alerts overlaps is missed by that rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from datasafe.yamlcheck import Validator, read_yaml

from .anomalies import ANOMALY_KINDS
from .catalogue import METRICS
from .errors import ConfigError
from .logs import LogTemplates, _grid, _Grid, load_log_templates

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "data_config" / "alert_rules.yaml"
MAX_RULES_BYTES = 1_000_000
RULE_FORMS = ("threshold", "log_rate", "absence")
ALERT_SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertRule:
    name: str
    form: str                    # threshold | log_rate | absence
    severity: str
    detects: tuple[str, ...]
    metric: str = ""             # threshold
    above: float | None = None   # threshold
    below: float | None = None   # threshold
    for_minutes: float = 0.0     # threshold
    template: str = ""           # log_rate, absence
    at_least: int = 1            # log_rate
    window_minutes: float = 0.0  # log_rate, absence


@dataclass(frozen=True)
class AlertRules:
    source: str
    grace_minutes: float
    rules: tuple[AlertRule, ...]


def load_alert_rules(path: str | Path | None = None, templates: LogTemplates | None = None) -> AlertRules:
    """Read and validate alert rules; log templates they name must exist in `templates`."""
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    source = path.name if path == DEFAULT_RULES_PATH else str(path)
    data = read_yaml(path, source, ConfigError, MAX_RULES_BYTES)
    return parse_alert_rules(data, source, templates or load_log_templates())


def parse_alert_rules(data: Any, source: str, templates: LogTemplates) -> AlertRules:
    v = Validator(source, ConfigError)
    root = v.mapping(data, "", required=("rules",), optional=("match",))
    match = v.mapping(root.get("match") or {}, "match", optional=("grace_minutes",))
    grace = v.number(match.get("grace_minutes", 0), "match.grace_minutes", 0, 1e6)
    template_ids = {t.id for t in templates.templates}
    rules = []
    for name, node in v.mapping(root["rules"], "rules").items():
        key = f"rules.{name}"
        d = v.mapping(node, key, required=("severity",), optional=(*RULE_FORMS, "detects", "description"))
        forms = [f for f in RULE_FORMS if f in d]
        if len(forms) != 1:
            v.fail(key, f"give exactly one of {', '.join(RULE_FORMS)}")
        form = forms[0]
        severity = v.string(d["severity"], f"{key}.severity")
        if severity not in ALERT_SEVERITIES:
            v.fail(f"{key}.severity", f"{severity!r} is not one of {', '.join(ALERT_SEVERITIES)}")
        detects = d.get("detects") or []
        if not isinstance(detects, list):
            v.fail(f"{key}.detects", "expected a list of anomaly kinds")
        for k in detects:
            if k not in ANOMALY_KINDS:
                v.fail(f"{key}.detects", f"unknown anomaly kind {k!r}; known: {', '.join(sorted(ANOMALY_KINDS))}")
        v.text(d.get("description", ""), f"{key}.description")
        fkey = f"{key}.{form}"
        args: dict[str, Any] = {}
        if form == "threshold":
            t = v.mapping(d[form], fkey, required=("metric", "for_minutes"), optional=("above", "below"))
            metric = v.string(t["metric"], f"{fkey}.metric")
            if metric not in METRICS:
                v.fail(f"{fkey}.metric", f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
            if ("above" in t) == ("below" in t):
                v.fail(fkey, "give exactly one of above or below")
            bound = "above" if "above" in t else "below"
            args.update(metric=metric, **{bound: v.number(t[bound], f"{fkey}.{bound}", -1e12, 1e12)},
                        for_minutes=v.number(t["for_minutes"], f"{fkey}.for_minutes", 0, 1e6))
        else:
            required = ("template", "at_least", "window_minutes") if form == "log_rate" else ("template", "minutes")
            t = v.mapping(d[form], fkey, required=required, optional=())
            template = v.string(t["template"], f"{fkey}.template")
            if template not in template_ids:
                v.fail(f"{fkey}.template", f"unknown log template {template!r}")
            minutes_key = "window_minutes" if form == "log_rate" else "minutes"
            args.update(template=template,
                        window_minutes=v.number(t[minutes_key], f"{fkey}.{minutes_key}", 0.001, 1e6))
            if form == "log_rate":
                args["at_least"] = v.whole(t["at_least"], f"{fkey}.at_least", 1, 10**9)
        rules.append(AlertRule(name, form, severity, tuple(detects), **args))
    if not rules:
        v.fail("rules", "at least one rule is needed")
    return AlertRules(source, grace, tuple(rules))


# ------------------------------------------------------------------------------ evaluation
def rule_condition(rule: AlertRule, grid: _Grid, counts: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """bool[H, T]: where the rule's condition holds at the sample instants; and the samples it must hold."""
    if rule.form == "threshold":
        x = grid.values[rule.metric]
        cond = x > rule.above if rule.above is not None else x < rule.below
        return cond, math.ceil(rule.for_minutes * 60000 / grid.dt_ms - 1e-9) + 1
    w = max(1, math.ceil(rule.window_minutes * 60000 / grid.dt_ms - 1e-9))
    c = np.cumsum(counts[rule.template], axis=1)
    window = c - np.concatenate([np.zeros((c.shape[0], w), c.dtype), c[:, :-w]], axis=1)[:, :c.shape[1]]
    if rule.form == "log_rate":
        return window >= rule.at_least, 1
    seen = np.arange(grid.n_steps) >= w - 1   # a whole window observed
    return (window == 0) & seen[None, :], 1


def episodes(cond: np.ndarray, hold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alerts from a condition: (host index, fired step index, resolved step index or -1).

    A run of the condition of length L >= hold fires at its hold-th sample and resolves at the first
    sample after the run (-1 when the run lasts to the end of the trace).
    """
    H, T = cond.shape
    padded = np.zeros((H, T + 2), bool)
    padded[:, 1:-1] = cond
    d = np.diff(padded.astype(np.int8), axis=1)
    sh, ss = np.nonzero(d == 1)        # run starts (index into steps)
    eh, ee = np.nonzero(d == -1)       # first step after each run
    long = (ee - ss) >= hold
    fired = ss[long] + hold - 1
    resolved = np.where(ee[long] >= T, -1, ee[long])
    return sh[long], fired, resolved


def log_counts(logs: pl.DataFrame, grid: _Grid, template_ids: set[str]) -> dict[str, np.ndarray]:
    """int64[H, T] lines per template and sample interval (t_i - interval, t_i]."""
    pos = np.full(int(grid.hosts.max()) + 1, -1, np.int64)
    pos[grid.hosts] = np.arange(len(grid.hosts))
    out = {}
    for tid in template_ids:
        sel = logs.filter(pl.col("template_id").cast(pl.Utf8) == tid)
        h = sel["host"].to_numpy().astype(np.int64)
        ms = sel["timestamp"].cast(pl.Datetime("ms", "UTC")).cast(pl.Int64).to_numpy()
        i = -((-(ms - grid.step0_ms)) // grid.dt_ms)
        ok = (h <= pos.shape[0] - 1) & (i >= 0) & (i < grid.n_steps)
        hix = pos[h[ok]]
        ok2 = hix >= 0
        flat = hix[ok2] * grid.n_steps + i[ok][ok2]
        out[tid] = np.bincount(flat, minlength=len(grid.hosts) * grid.n_steps).reshape(len(grid.hosts), -1)
    return out


@dataclass(frozen=True)
class AlertResult:
    alerts: pl.DataFrame    # one row per alert, with its outcome and matched event
    summary: pl.DataFrame   # per rule: alerts, true alerts, false alarms, incidents detected, missed
    missed: pl.DataFrame    # events no alert of any rule overlaps


ALERT_SCHEMA = {"rule": pl.Utf8, "severity": pl.Utf8, "host": pl.Int32, "fired_step": pl.Int64,
                "resolved_step": pl.Int64, "fired_at": pl.Datetime("us", "UTC"),
                "resolved_at": pl.Datetime("us", "UTC"), "outcome": pl.Utf8, "event_id": pl.Int64,
                "kind": pl.Utf8}


def evaluate_alerts(traces: pl.DataFrame, logs: pl.DataFrame, events: pl.DataFrame, *,
                    rules: AlertRules | str | Path | None = None, templates: LogTemplates | None = None,
                    interval_s: float | None = None) -> AlertResult:
    """Evaluate the alert rules over the traces and logs of a run and match the alerts to its events."""
    tpl = templates or load_log_templates()
    rs = rules if isinstance(rules, AlertRules) else load_alert_rules(rules, tpl)
    grid = _grid(traces, 0, interval_s, with_labels=False)
    counts = log_counts(logs, grid, {r.template for r in rs.rules if r.template})
    parts = []
    for rule in rs.rules:
        cond, hold = rule_condition(rule, grid, counts)
        hix, fired, resolved = episodes(cond, hold)
        parts.append(pl.DataFrame({
            "rule": pl.Series([rule.name] * len(hix), dtype=pl.Utf8),
            "severity": pl.Series([rule.severity] * len(hix), dtype=pl.Utf8),
            "host": pl.Series(grid.hosts[hix], dtype=pl.Int32),
            "fired_step": pl.Series(fired + grid.t0, dtype=pl.Int64),
            "resolved_step": pl.Series(np.where(resolved < 0, -1, resolved + grid.t0), dtype=pl.Int64),
        }))
    alerts = pl.concat(parts).with_columns(
        pl.when(pl.col("resolved_step") >= 0).then(pl.col("resolved_step")).alias("resolved_step"))
    to_time = lambda c: ((pl.col(c) - grid.t0) * grid.dt_ms + grid.step0_ms).cast(pl.Datetime("ms", "UTC")) \
        .cast(pl.Datetime("us", "UTC"))  # noqa: E731
    alerts = alerts.with_columns(fired_at=to_time("fired_step"), resolved_at=to_time("resolved_step"))
    alerts = _match(alerts, events.filter(pl.col("host").is_in(grid.hosts.tolist())), rs, grid)
    return AlertResult(alerts, _summary(alerts, events, rs, grid), _missed(alerts, events, grid))


def _match(alerts: pl.DataFrame, events: pl.DataFrame, rs: AlertRules, grid: _Grid) -> pl.DataFrame:
    """Attach to each alert the event it overlaps (a kind the rule detects first, then the earliest)."""
    grace = math.ceil(rs.grace_minutes * 60000 / grid.dt_ms - 1e-9)
    detects = pl.DataFrame({"rule": [r.name for r in rs.rules for _ in r.detects],
                            "kind": [k for r in rs.rules for k in r.detects]},
                           schema={"rule": pl.Utf8, "kind": pl.Utf8}).with_columns(wanted=pl.lit(True))
    ev = events.select(pl.col("host").cast(pl.Int32), "event_id", "kind", "start_step", "end_step")
    alerts = alerts.with_row_index("_alert")
    pairs = alerts.join(ev, on="host", how="inner").filter(
        (pl.col("fired_step") < pl.col("end_step") + grace)
        & (pl.col("resolved_step").is_null() | (pl.col("resolved_step") > pl.col("start_step"))))
    pairs = pairs.join(detects, on=["rule", "kind"], how="left").with_columns(pl.col("wanted").fill_null(False))
    best = (pairs.sort("_alert", "wanted", "start_step", "event_id", descending=[False, True, False, False])
            .group_by("_alert", maintain_order=True).first().select("_alert", "event_id", "kind"))
    out = alerts.join(best, on="_alert", how="left").sort("_alert").drop("_alert")
    out = out.with_columns(
        pl.when(pl.col("event_id").is_null()).then(pl.lit("false_alarm")).otherwise(pl.lit("true_alert"))
        .alias("outcome"))
    return out.select(list(ALERT_SCHEMA)).cast(ALERT_SCHEMA).sort("host", "fired_step", "rule")


def _hit_events(alerts: pl.DataFrame) -> pl.DataFrame:
    return alerts.filter(pl.col("event_id").is_not_null()).select("rule", "event_id").unique()


def _summary(alerts: pl.DataFrame, events: pl.DataFrame, rs: AlertRules, grid: _Grid) -> pl.DataFrame:
    hits = _hit_events(alerts)
    ev = events.filter(pl.col("host").is_in(grid.hosts.tolist()))
    rows = []
    for r in rs.rules:
        a = alerts.filter(pl.col("rule") == r.name)
        targets = ev.filter(pl.col("kind").is_in(list(r.detects)))["event_id"]
        hit = hits.filter(pl.col("rule") == r.name)["event_id"]
        detected = int(targets.is_in(hit.implode()).sum()) if len(targets) else 0
        rows.append({"rule": r.name, "form": r.form, "alerts": len(a),
                     "true_alerts": int((a["outcome"] == "true_alert").sum()),
                     "false_alarms": int((a["outcome"] == "false_alarm").sum()),
                     "incidents": len(targets), "detected": detected, "missed": len(targets) - detected})
    return pl.DataFrame(rows)


def _missed(alerts: pl.DataFrame, events: pl.DataFrame, grid: _Grid) -> pl.DataFrame:
    hit = _hit_events(alerts)["event_id"].unique()
    ev = events.filter(pl.col("host").is_in(grid.hosts.tolist()))
    return ev.filter(~pl.col("event_id").is_in(hit.implode()))


__all__ = ["AlertRule", "AlertRules", "AlertResult", "load_alert_rules", "parse_alert_rules",
           "evaluate_alerts", "episodes", "rule_condition", "DEFAULT_RULES_PATH"]
