"""Alert rules over traces and logs: they fire on their conditions and only there; matching to events."""

from __future__ import annotations

import bisect
import math
import re

import numpy as np
import polars as pl
import pytest
import yaml

import simulator
from simulator.alerts import DEFAULT_RULES_PATH, episodes, evaluate_alerts, load_alert_rules
from simulator.errors import ConfigError
from simulator.logs import load_log_templates, simulate_logs

SEED, HOSTS, STEPS, EVENTS, DT_MS = 2, 12, 576, 24, 300_000


@pytest.fixture(scope="module")
def run():
    traces, events = simulator.simulate(hosts=HOSTS, steps=STEPS, anomalies=EVENTS, seed=SEED)
    templates = load_log_templates()
    logs = simulate_logs(traces, events, seed=SEED, templates=templates)
    rules = load_alert_rules(templates=templates)
    return traces, events, logs, templates, rules, evaluate_alerts(traces, logs, events, rules=rules,
                                                                   templates=templates)


def _reference_runs(cond_at, hold: int) -> set[tuple[int, int, int | None]]:
    """A plain loop: (host, fired step, resolved step) of every run of the condition held `hold` samples."""
    out = set()
    for h in range(HOSTS):
        run, fired = 0, None
        for i in range(STEPS):
            if cond_at(h, i):
                run += 1
                if run == hold:
                    fired = i
            else:
                if fired is not None:
                    out.add((h, fired, i))
                run, fired = 0, None
        if fired is not None:
            out.add((h, fired, None))
    return out


def _alerts_of(result, rule: str) -> set[tuple[int, int, int | None]]:
    a = result.alerts.filter(pl.col("rule") == rule)
    return set(zip(a["host"].to_list(), a["fired_step"].to_list(), a["resolved_step"].to_list()))


def test_threshold_rules_fire_exactly_where_the_trace_says(run):
    traces, _, _, _, rules, result = run
    fired_any = 0
    for rule in (r for r in rules.rules if r.form == "threshold"):
        x = traces[rule.metric].to_numpy().astype(np.float64).reshape(HOSTS, STEPS)
        hold = math.ceil(rule.for_minutes * 60000 / DT_MS) + 1
        if rule.above is not None:
            expected = _reference_runs(lambda h, i: x[h, i] > rule.above, hold)
        else:
            expected = _reference_runs(lambda h, i: x[h, i] < rule.below, hold)
        assert _alerts_of(result, rule.name) == expected, rule.name
        fired_any += len(expected)
    assert fired_any > 0


def test_log_rules_fire_exactly_where_the_lines_say(run):
    traces, _, logs, _, rules, result = run
    t0 = traces["timestamp"].dt.epoch("ms")[0]
    checked = 0
    for rule in (r for r in rules.rules if r.form in ("log_rate", "absence")):
        window = math.ceil(rule.window_minutes * 60000 / DT_MS) * DT_MS
        times = {h: sorted(logs.filter(pl.col("host") == h, pl.col("template_id") == rule.template)
                           ["timestamp"].dt.epoch("ms").to_list()) for h in range(HOSTS)}

        def count(h, i):
            t = t0 + i * DT_MS   # lines in (t - window, t]
            return bisect.bisect_right(times[h], t) - bisect.bisect_right(times[h], t - window)
        if rule.form == "log_rate":
            expected = _reference_runs(lambda h, i: count(h, i) >= rule.at_least, 1)
        else:
            expected = _reference_runs(lambda h, i: (i + 1) * DT_MS >= window and count(h, i) == 0, 1)
        assert _alerts_of(result, rule.name) == expected, rule.name
        checked += len(expected)
    assert checked > 0


def test_alerts_matched_to_events(run):
    _, events, _, _, rules, result = run
    grace = math.ceil(rules.grace_minutes * 60000 / DT_MS)
    ev = list(events.iter_rows(named=True))
    for a in result.alerts.iter_rows(named=True):
        overlapping = [e for e in ev if e["host"] == a["host"] and a["fired_step"] < e["end_step"] + grace
                       and (a["resolved_step"] is None or a["resolved_step"] > e["start_step"])]
        assert (a["outcome"] == "true_alert") == bool(overlapping)
        if overlapping:
            assert a["event_id"] in {e["event_id"] for e in overlapping}
    s = result.summary
    assert (s["alerts"] == s["true_alerts"] + s["false_alarms"]).all()
    assert (s["incidents"] == s["detected"] + s["missed"]).all()
    vemkd = s.filter(pl.col("rule") == "vemkd_down").row(0, named=True)
    assert vemkd["incidents"] > 0 and vemkd["missed"] == 0      # a crash always drops the count to 0
    hit = set(result.alerts["event_id"].drop_nulls().to_list())
    assert set(result.missed["event_id"].to_list()) == set(events["event_id"].to_list()) - hit


def test_episodes_hold_and_open_end():
    cond = np.array([[1, 1, 0, 1, 1, 1, 0, 1, 1]], bool)
    h, fired, resolved = episodes(cond, 2)
    assert list(zip(fired.tolist(), resolved.tolist())) == [(1, 2), (4, 6), (8, -1)]
    h, fired, resolved = episodes(cond, 3)
    assert list(zip(fired.tolist(), resolved.tolist())) == [(5, 6)]


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["rules"]["cpu_saturated"]["threshold"].update(metric="cpu_temp"),
     "rules.cpu_saturated.threshold.metric"),
    (lambda d: d["rules"]["cpu_saturated"]["threshold"].update(below=3), "rules.cpu_saturated.threshold"),
    (lambda d: d["rules"]["oom_kill"]["log_rate"].update(template="oom_nope"), "rules.oom_kill.log_rate.template"),
    (lambda d: d["rules"]["oom_kill"].update(severity="page"), "rules.oom_kill.severity"),
    (lambda d: d["rules"]["oom_kill"].update(detects=["meltdown"]), "rules.oom_kill.detects"),
    (lambda d: d["rules"]["resource_report_missing"]["absence"].update(minutes=-5),
     "rules.resource_report_missing.absence.minutes"),
])
def test_rule_errors_name_file_and_key(tmp_path, edit, where):
    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    edit(data)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {where}")):
        load_alert_rules(path)
