"""Incident case folders: they load with pandas, injection times lie inside the events, controls are clean."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

import simulator
from simulator.alerts import evaluate_alerts
from simulator.cases import read_case, write_cases
from simulator.errors import SimulatorError
from simulator.logs import load_log_templates, simulate_logs

SEED, HOSTS, STEPS, EVENTS = 2, 12, 576, 24


@pytest.fixture(scope="module")
def run():
    traces, events = simulator.simulate(hosts=HOSTS, steps=STEPS, anomalies=EVENTS, seed=SEED)
    templates = load_log_templates()
    logs = simulate_logs(traces, events, seed=SEED, templates=templates)
    alerts = evaluate_alerts(traces, logs, events, templates=templates).alerts
    return traces, events, logs, alerts


@pytest.fixture(scope="module")
def written(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cases")
    index = write_cases(folder, *run, seed=SEED, no_fault_share=0.25, context_hosts=2)
    return folder, index


def test_one_case_per_event_and_the_share_of_controls(run, written):
    _, events, _, _ = run
    folder, index = written
    faults = index.filter(pl.col("label") == "fault")
    assert sorted(faults["event_id"].to_list()) == sorted(events["event_id"].to_list())
    assert index.filter(pl.col("label") == "normal").height == round(EVENTS * 0.25 / 0.75)
    assert pl.read_csv(folder / "cases.csv").height == index.height


def test_fault_cases_load_with_pandas_and_inject_inside_the_event(run, written):
    _, events, _, _ = run
    folder, index = written
    ev = {r["event_id"]: r for r in events.iter_rows(named=True)}
    for row in index.filter(pl.col("label") == "fault").iter_rows(named=True):
        case = read_case(folder / row["case"])
        e = ev[row["event_id"]]
        inject = pd.Timestamp(case["inject_time"], unit="s", tz="UTC")
        assert pd.Timestamp(e["start"]) <= inject < pd.Timestamp(e["end"])
        data = case["data"]
        assert "time" in data.columns and data["time"].is_monotonic_increasing
        host = case["meta"]["root_cause"]["host"]
        assert f"{host}_{e['primary_metric']}" in data.columns and len(case["meta"]["hosts"]) == 3
        assert data["time"].min() <= case["inject_time"] <= data["time"].max()
        logs = case["logs"]
        assert set(logs.columns) >= {"time", "host", "source", "severity", "template_id", "message", "event_id"}
        assert (logs["event_id"].dropna() == row["event_id"]).any()   # the incident's own lines are in it
        lo, hi = data["time"].min(), data["time"].max()
        assert ((logs["time"] > lo - 300) & (logs["time"] <= hi)).all()


def test_no_fault_cases_are_clear_of_events(run, written):
    _, events, _, _ = run
    folder, index = written
    for row in index.filter(pl.col("label") == "normal").iter_rows(named=True):
        case = read_case(folder / row["case"])
        assert case["inject_time"] is None and case["meta"]["root_cause"] is None
        on_host = events.filter(pl.col("host") == row["host"])
        overlap = on_host.filter((pl.col("start_step") < row["window_end_step"])
                                 & (pl.col("end_step") > row["window_start_step"]))
        assert overlap.height == 0
        hostname = case["meta"]["hosts"][0]
        lines = case["logs"][case["logs"]["host"] == row["host"]]
        assert lines["event_id"].isna().all() and hostname == f"cn{row['host']:05d}"


def test_same_seed_same_cases(run, written, tmp_path):
    folder, index = written
    again = write_cases(tmp_path / "again", *run, seed=SEED, no_fault_share=0.25, context_hosts=2)
    assert again.equals(index)
    name = index["case"][-1]
    for f in ("data.csv", "logs.csv", "alerts.csv", "case.json"):
        assert (folder / name / f).read_bytes() == (tmp_path / "again" / name / f).read_bytes()


def test_refuses_a_foreign_folder_and_bad_options(run, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SimulatorError, match="no cases.csv"):
        write_cases(tmp_path, *run, seed=SEED)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    with pytest.raises(SimulatorError, match="no_fault_share"):
        write_cases(tmp_path / "x", *run, seed=SEED, no_fault_share=1.0)
    assert not (tmp_path / "x").exists()


def test_the_cases_command_writes_the_cases_and_counts_alerts_per_rule(tmp_path, capsys):
    from simulator.__main__ import main

    out = tmp_path / "cases"
    assert main(["cases", "--hosts", "4", "--steps", "400", "--output", str(out), "--seed", "3", "--log-files"]) == 0
    printed = capsys.readouterr().out
    index = pd.read_csv(out / "cases.csv")
    assert f"{int((index['label'] == 'fault').sum())} fault cases" in printed and "alerts per rule:" in printed
    assert sorted(p.name for p in (out / "logs").iterdir()) == [f"cn{h:05d}" for h in range(4)]
    assert main(["cases", "--hosts", "4", "--steps", "400", "--output", str(tmp_path / "x"),
                 "--no-fault-share", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--no-fault-share: must be in [0, 1)" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_the_cases_command_sizes_events_to_a_share_of_the_points(tmp_path, capsys):
    """At one second over 45 minutes the default (one event per host) makes most points anomalous;
    --anomaly-share sizes the events to the trace as `traces` does, and says the share reached."""
    from simulator.__main__ import main

    out = tmp_path / "cases"
    assert main(["cases", "--hosts", "6", "--steps", "2700", "--interval-s", "1", "--anomaly-share", "0.05",
                 "--output", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    reached = float(printed.split("anomalous points: ")[1].split("%")[0]) / 100
    assert 0.04 <= reached <= 0.06 and "(asked: 5.00%)" in printed
    assert main(["cases", "--hosts", "6", "--steps", "2700", "--anomalies", "3", "--anomaly-share", "0.05",
                 "--output", str(tmp_path / "both")]) == 2
    err = capsys.readouterr().err
    assert "--anomalies, --anomaly-share: give one of them" in err and err.count("\n") == 1
    assert not (tmp_path / "both").exists()
