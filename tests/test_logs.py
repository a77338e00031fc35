"""Log lines simulated with the metrics: exact labels, GC consistency, signatures, determinism, config errors."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest
import yaml

import simulator
from simulator.catalogue import C_JVM_RESTART
from simulator.config import load_config
from simulator.errors import ConfigError, SimulatorError
from simulator.events import plan_events
from simulator.logs import (DEFAULT_TEMPLATES_PATH, EVENT_MARGIN_INTERVALS, load_log_templates, read_logs_parquet,
                            render_lines, simulate_logs, write_log_files, write_logs_parquet, write_logs_parts)
from simulator.population import build_population

SEED, HOSTS, STEPS, EVENTS = 2, 12, 576, 24  # every anomaly kind; 3 leaks, 2 of them end in an OOM kill
GC_LINE = re.compile(r"^GC\((?P<n>\d+)\) Pause (?P<kind>Young \(Normal\) \(G1 Evacuation Pause\)|Full \(G1 Compaction "
                     r"Pause\)) (?P<before>\d+)M->(?P<after>\d+)M\((?P<cap>\d+)M\) (?P<ms>\d+)\.(?P<us>\d{3})ms$")
DERIVED_METRIC = {"gc_young": "java_gc_time", "gc_full": "java_gc_time", "job_submitted": "spectrum_active_jobs",
                  "job_started": "spectrum_active_jobs", "job_finished": "spectrum_active_jobs"}
# the lines an operator sees for each kind (at least one of them carries every event's id)
SIGNATURES = {
    "cpu_spike": {"lim_host_busy"},
    "runaway_process": {"runaway_killed"},
    "memory_leak": {"gc_young", "gc_full", "lim_mem_busy", "oom_killed"},
    "disk_full": {"journal_no_space"},
    "network_congestion": {"nic_tx_hang"},
    "jvm_gc_storm": {"gc_full"},
    "daemon_crash": {"vemkd_segv"},
    "job_backlog": {"pending_slots"},
}


@pytest.fixture(scope="module")
def run():
    traces, events = simulator.simulate(hosts=HOSTS, steps=STEPS, anomalies=EVENTS, seed=SEED)
    templates = load_log_templates()
    logs = simulate_logs(traces, events, seed=SEED, templates=templates)
    return traces, events, logs, templates


def _step_of(logs: pl.DataFrame, traces: pl.DataFrame) -> np.ndarray:
    """The step whose interval (t_i - dt, t_i] holds each line."""
    ts = traces.filter(pl.col("host") == traces["host"][0])["timestamp"].dt.epoch("ms").to_numpy()
    dt = ts[1] - ts[0]
    ms = logs["timestamp"].dt.epoch("ms").to_numpy()
    return -((-(ms - ts[0])) // dt)


def test_schema_and_order(run):
    _, _, logs, _ = run
    assert logs.schema["host"] == pl.Int32
    assert logs.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert logs.schema["event_id"] == pl.Int64
    assert logs.columns == ["host", "timestamp", "source", "severity", "template_id", "message", "event_id"]
    assert logs.equals(logs.sort("host", "timestamp", maintain_order=True))
    assert len(logs) > 10_000 and logs["message"].null_count() == 0
    assert not logs["message"].str.contains(r"\{|\}").any()


def test_event_ids_exact(run):
    """A line carries an event id iff the event caused it; such lines lie in (start - interval, end]."""
    traces, events, logs, templates = run
    trigger = {t.id: t for t in templates.templates}
    tid = logs["template_id"].cast(pl.Utf8).to_numpy()
    eid = logs["event_id"].fill_null(-1).to_numpy()
    kind_of = dict(zip(events["event_id"].to_list(), events["kind"].to_list()))
    for t in templates.templates:
        sel = tid == t.id
        if t.trigger in ("background", "periodic"):
            assert (eid[sel] == -1).all(), t.id
        elif t.trigger == "event":
            assert (eid[sel] >= 0).all(), t.id
            assert all(kind_of[e] in t.kinds for e in eid[sel]), t.id
    # derived lines: exactly the label of their metric point
    step = _step_of(logs, traces)
    host = logs["host"].to_numpy()
    for name, metric in DERIVED_METRIC.items():
        sel = tid == name
        labels = traces[f"label_{metric}"].to_numpy().reshape(HOSTS, STEPS)
        assert np.array_equal(eid[sel], labels[host[sel], step[sel]]), name
    # every labelled line lies within its event on its host
    ev = events.select("event_id", pl.col("host").cast(pl.Int32).alias("ev_host"), "start", "end")
    tagged = logs.filter(pl.col("event_id").is_not_null()).join(ev, on="event_id", how="left")
    assert tagged["ev_host"].null_count() == 0
    assert (tagged["host"] == tagged["ev_host"]).all()
    margin = pl.duration(seconds=300 * EVENT_MARGIN_INTERVALS)
    inside = tagged.select((pl.col("timestamp") > pl.col("start") - margin) & (pl.col("timestamp") <= pl.col("end")))
    assert inside.to_series().all()
    assert set(trigger) >= set(tid)


def test_gc_pauses_add_up_to_gc_time(run):
    traces, _, logs, _ = run
    gc = logs.filter(pl.col("source") == "gc", pl.col("message").str.starts_with("GC("))
    parts = gc.select(pl.col("message").str.extract_groups(GC_LINE.pattern)).unnest("message")
    assert parts["n"].null_count() == 0
    pause_us = parts["ms"].cast(pl.Int64).to_numpy() * 1000 + parts["us"].cast(pl.Int64).to_numpy()
    before, after, cap = (parts[k].cast(pl.Int64).to_numpy() for k in ("before", "after", "cap"))
    assert (before >= after).all() and (before <= cap).all()
    step = _step_of(gc, traces)
    flat = gc["host"].to_numpy() * STEPS + step
    total = np.bincount(flat, weights=pause_us, minlength=HOSTS * STEPS)
    gc_pct = traces["java_gc_time"].to_numpy().astype(np.float64)
    expected = np.rint(gc_pct / 100.0 * 300e6)
    assert np.array_equal(total, expected)          # to the microsecond: the printed digits add up
    assert ((gc_pct > 0) == (np.bincount(flat, minlength=HOSTS * STEPS) > 0)).all()
    # the heap after a pause is never above the heap gauge at the end of its interval
    heap = traces["java_heap_usage"].to_numpy().astype(np.float64)[flat]
    assert (after <= np.ceil(heap / 100.0 * cap) + 1).all()
    full = parts["kind"].str.starts_with("Full").to_numpy()
    assert full.any() and (heap[full] >= 95.0).all()


def test_gc_numbering_restarts_with_the_jvm(run):
    _, _, logs, _ = run
    killed = logs.filter(pl.col("template_id") == "oom_killed")
    for host, when in zip(killed["host"].to_list(), killed["timestamp"].to_list()):
        after = logs.filter(pl.col("host") == host, pl.col("source") == "gc", pl.col("timestamp") > when)
        assert after["message"][0] == "Using G1"
        numbers = after["message"].str.extract(r"^GC\((\d+)\)").drop_nulls().cast(pl.Int64)
        assert numbers[0] == 0 and (numbers.diff().drop_nulls() == 1).all()


def test_oom_kill_only_where_the_leak_restarts(run):
    traces, events, logs, _ = run
    cfg = load_config()
    plan = plan_events(cfg, build_population(cfg, HOSTS, SEED), EVENTS, STEPS, seed=SEED, interval_s=300.0)
    restarted = plan.profiles[plan.profile_row + plan.length - 1, C_JVM_RESTART] > 0.5
    truth = set(np.flatnonzero(restarted & (np.array(plan.kind_names)[plan.kind] == "memory_leak")).tolist())
    assert len(truth) == 2
    killed = logs.filter(pl.col("template_id") == "oom_killed")
    assert set(killed["event_id"].to_list()) == truth and len(killed) == len(truth)
    end = dict(zip(events["event_id"].to_list(), events["end_step"].to_list()))
    assert all(s == end[e] - 1 for s, e in zip(_step_of(killed, traces), killed["event_id"].to_list()))
    rss = killed["message"].str.extract(r"anon-rss:(\d+)kB").cast(pl.Int64)
    assert (rss > 0).all()


def test_every_kind_leaves_its_signature(run):
    _, events, logs, _ = run
    tagged = logs.filter(pl.col("event_id").is_not_null()).group_by("event_id").agg(
        pl.col("template_id").cast(pl.Utf8).unique())
    seen = dict(zip(tagged["event_id"].to_list(), tagged["template_id"].to_list()))
    assert set(events["kind"]) == set(SIGNATURES)
    for event_id, kind in zip(events["event_id"].to_list(), events["kind"].to_list()):
        assert SIGNATURES[kind] & set(seen.get(event_id, [])), (event_id, kind)


def test_heartbeat_silent_while_vemkd_is_down(run):
    traces, _, logs, _ = run
    reports = logs.filter(pl.col("template_id") == "resource_report")
    step = _step_of(reports, traces)
    vemkd = traces["vemkd_process_count"].to_numpy().reshape(HOSTS, STEPS)
    assert (vemkd[reports["host"].to_numpy(), step] > 0).all()
    assert (vemkd == 0).any()


def test_same_seed_same_lines_any_host_split(run, tmp_path):
    traces, events, logs, templates = run
    again = simulate_logs(traces, events, seed=SEED, templates=templates)
    assert again.equals(logs)
    write_logs_parquet(logs, tmp_path / "a.parquet")
    write_logs_parquet(again, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    low = simulate_logs(traces.filter(pl.col("host") < 5), events, seed=SEED, templates=templates)
    high = simulate_logs(traces.filter(pl.col("host") >= 5), events, seed=SEED, templates=templates)
    assert pl.concat([low, high]).equals(logs)
    other = simulate_logs(traces, events, seed=SEED + 1, templates=templates)
    assert not other.equals(logs)


def test_parts_hold_the_same_lines(run, tmp_path):
    traces, events, logs, templates = run
    paths = write_logs_parts(traces, events, tmp_path, seed=SEED, templates=templates, hosts_per_part=5)
    assert [p.name for p in paths] == ["logs-00000.parquet", "logs-00001.parquet", "logs-00002.parquet"]
    assert read_logs_parquet(tmp_path).equals(logs)
    write_logs_parquet(logs, tmp_path / "one.parquet")
    assert read_logs_parquet(tmp_path / "one.parquet").equals(logs)


def test_log_files_as_written_by_the_daemons(run, tmp_path):
    _, _, logs, templates = run
    part = logs.filter(pl.col("host") < 2)
    files = write_log_files(part, tmp_path, templates)
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    assert {"cn00000/messages", "cn00000/gc.log", "cn00000/vemkd.log", "cn00000/scheduler.log"} <= names
    gc_lines = (tmp_path / "cn00000" / "gc.log").read_text().splitlines()
    unified = re.compile(r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000\]\[(info|warning)\]\[gc\] "
                         r"(GC\(\d+\) Pause|Using G1)")
    assert gc_lines and all(unified.match(line) for line in gc_lines)
    syslog = (tmp_path / "cn00000" / "messages").read_text().splitlines()
    assert all(re.match(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d cn00000 \S+: ", line) for line in syslog)
    n_written = sum(len(p.read_text().splitlines()) for p in files)
    assert n_written == len(part)
    assert render_lines(part.head(3), templates).len() == 3


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["templates"]["cron_sa1"].update(severity="loud"), "templates.cron_sa1.severity"),
    (lambda d: d["templates"]["oom_killed"]["event"].update(kind="meltdown"), "templates.oom_killed.event.kind"),
    (lambda d: d["templates"]["oom_killed"]["event"].update(moment="later"), "templates.oom_killed.event.moment"),
    (lambda d: d["templates"]["cron_sa1"].update(text="CROND[{nope}]"), "templates.cron_sa1.text"),
    (lambda d: d["templates"]["cron_sa1"].update(source="elsewhere"), "templates.cron_sa1.source"),
    (lambda d: d["templates"]["cron_sa1"].update(background={"per_hour": 1}), "templates.cron_sa1"),
    (lambda d: d["templates"]["gc_young"].update(derive="gc_medium"), "templates.gc_young.derive"),
    (lambda d: d["model"].update(ram_gb=[]), "model.ram_gb"),
    (lambda d: d["sources"]["gc"].update(file="../gc.log"), "sources.gc.file"),
    (lambda d: d["templates"]["vemkd_segv"]["event"].update(delay_s=600), "templates.vemkd_segv.event.delay_s"),
])
def test_template_errors_name_file_and_key(tmp_path, edit, where):
    data = yaml.safe_load(DEFAULT_TEMPLATES_PATH.read_text())
    edit(data)
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {where}")):
        load_log_templates(path)


def test_bad_traces_are_refused(run):
    traces, events, _, templates = run
    with pytest.raises(SimulatorError, match="label_cpu_usage"):
        simulate_logs(traces.drop("label_cpu_usage"), events, seed=SEED, templates=templates)
    with pytest.raises(SimulatorError, match="same consecutive steps"):
        simulate_logs(traces.filter(pl.col("step") != 3), events, seed=SEED, templates=templates)
    with pytest.raises(SimulatorError, match="seed"):
        simulate_logs(traces, events, seed=-1, templates=templates)


# ------------------------------------------------------------------------------ excerpts
def _reference_excerpts(lines: pl.DataFrame, points: pl.DataFrame, before: int, limit: int) -> pl.DataFrame:
    """The excerpt ranking written plainly in Polars (each window joined out, ranked by window functions):
    (point, row, total) of the chosen lines, by point then time."""
    windows = (points.with_row_index("point").with_columns(pl.col("point").cast(pl.Int64))
               .with_columns(pl.int_ranges(pl.col("step") - before, pl.col("step") + 1).alias("s")).explode("s")
               .select("point", pl.col("host").cast(pl.Int32), pl.col("s").cast(pl.Int32).alias("step")))
    joined = (lines.with_row_index("row").join(windows, on=["host", "step"], maintain_order="left")
              .sort("point", maintain_order=True))
    order = pl.int_range(pl.len())
    return (joined.select("point", "row", "template_id", pl.col("severity").to_physical().alias("severity"))
            .with_columns(order.alias("order"))
            .with_columns(pl.len().over("point").alias("total"), pl.len().over("point", "template_id").alias("seen"),
                          order.reverse().over("point", "template_id").alias("nth"))
            .sort(["point", "nth", "severity", "seen", "order"], descending=[False, False, True, False, True])
            .group_by("point", maintain_order=True).head(limit)
            .sort("point", "order").select("point", pl.col("row").cast(pl.Int64), pl.col("total").cast(pl.Int64)))


def _staged(logs: pl.DataFrame, traces: pl.DataFrame) -> pl.DataFrame:
    from simulator.staging import logs_table

    columns = logs.columns
    staged = logs_table(logs, traces)
    assert logs.columns == columns  # the caller's frame is left as it was
    return staged


@pytest.mark.parametrize("before, limit", [(11, 8), (0, 3), (40, 1), (3, 30)])
def test_log_excerpts_rank_as_the_plain_reference(run, before, limit):
    from simulator.logs import log_excerpts

    traces, _, logs, _ = run
    lines = _staged(logs, traces)
    rng = np.random.default_rng(7)
    points = pl.DataFrame({"host": rng.integers(0, HOSTS, 300), "step": rng.integers(0, STEPS, 300)})
    points = pl.concat([points, pl.DataFrame({"host": [0, HOSTS - 1], "step": [0, STEPS - 1]})])  # the trace's ends
    got = log_excerpts(lines.with_row_index("row"), points, before=before, limit=limit)
    expected = _reference_excerpts(lines, points, before, limit)
    assert expected["point"].n_unique() == len(points)  # every window has lines
    assert got.select("point", pl.col("row").cast(pl.Int64), "total").equals(expected)
    assert got.drop("point", "total", "row").equals(lines[got["row"]])  # the lines' own columns, unchanged


def test_log_excerpts_on_small_windows_of_random_lines():
    """Many templates, ties of severity and counts, empty windows: the kernel against the reference."""
    from simulator.logs import log_excerpts

    rng = np.random.default_rng(3)
    n = 4_000
    host = np.sort(rng.integers(0, 5, n)).astype(np.int32)
    step = np.concatenate([np.sort(rng.integers(0, 60, (host == h).sum())) for h in range(5)]).astype(np.int32)
    templates = pl.Enum([f"t{i}" for i in range(20)])
    lines = pl.DataFrame({"host": host, "step": step,
                          "template_id": pl.Series([f"t{i}" for i in rng.integers(0, 20, n)], dtype=templates),
                          "severity": pl.Series(rng.choice(["info", "warning", "error"], n),
                                                dtype=pl.Enum(["debug", "info", "warning", "error"]))})
    points = pl.DataFrame({"host": rng.integers(0, 6, 200), "step": rng.integers(0, 70, 200)})  # host 5: no lines
    for before, limit in [(0, 8), (2, 8), (5, 4), (9, 25)]:
        got = log_excerpts(lines.with_row_index("row"), points, before=before, limit=limit)
        assert got.select("point", pl.col("row").cast(pl.Int64), "total").equals(
            _reference_excerpts(lines, points, before, limit)), (before, limit)


def test_log_excerpts_refuse_unsorted_lines_and_bad_options(run):
    from simulator.logs import log_excerpts

    traces, _, logs, _ = run
    lines = _staged(logs, traces)
    points = pl.DataFrame({"host": [1], "step": [100]})
    with pytest.raises(ValueError, match="sorted by host, then time"):
        log_excerpts(lines.reverse(), points, before=3)
    with pytest.raises(ValueError, match="before must be a whole number >= 0"):
        log_excerpts(lines, points, before=-1)
    with pytest.raises(ValueError, match="limit must be a whole number >= 1"):
        log_excerpts(lines, points, before=3, limit=0)


def test_sample_excerpts_show_time_source_severity_message_and_never_the_labels(run):
    from simulator.logs import EXCERPT_LINES, log_excerpts, sample_log_excerpts

    traces, _, logs, _ = run
    lines = _staged(logs, traces)
    points = pl.DataFrame({"host": [0, 3, 7], "step": [0, 250, 575]})
    got = sample_log_excerpts(lines, points, before=11)
    assert got.columns == ["host", "step", "log_total", "log_lines"]
    fields = [f.name for f in got.schema["log_lines"].inner.fields]
    assert fields == ["time", "source", "severity", "message"]  # neither event_id nor template_id
    picked = log_excerpts(lines, points, before=11)
    for i, row in enumerate(got.iter_rows(named=True)):
        mine = picked.filter(pl.col("point") == i)
        assert 0 < len(row["log_lines"]) <= EXCERPT_LINES and row["log_total"] == mine["total"][0]
        assert [d["message"] for d in row["log_lines"]] == mine["message"].to_list()
        assert [d["time"] for d in row["log_lines"]] == mine["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_list()
        assert [d["severity"] for d in row["log_lines"]] == mine["severity"].cast(pl.Utf8).to_list()
    # windows that hold lines of events: the same excerpts once every event id is cleared
    labelled = lines.filter(pl.col("event_id").is_not_null()).gather_every(997).select("host", "step")
    with_ids = sample_log_excerpts(lines, labelled, before=11)
    cleared = sample_log_excerpts(lines.with_columns(pl.lit(None, pl.Int64).alias("event_id")), labelled, before=11)
    assert len(labelled) >= 10 and cleared.equals(with_ids)
    none = sample_log_excerpts(lines.filter(pl.col("host") != 3), points, before=11)  # a window without lines
    assert none.row(1, named=True)["log_total"] == 0 and none.row(1, named=True)["log_lines"] == []


def test_two_samples_at_one_host_and_step_keep_one_row_each():
    from simulator.samples import with_log_excerpts

    samples = pl.DataFrame({"id": ["a", "b", "c"], "host": [1, 1, 2], "step": [5, 5, 7]})
    excerpts = pl.DataFrame({"host": [1, 1, 2], "step": [5, 5, 7], "log_total": [3, 3, 1]})  # one per sample
    joined = with_log_excerpts(samples, excerpts)
    assert joined["id"].to_list() == ["a", "b", "c"] and joined["log_total"].to_list() == [3, 3, 1]
