"""The staging folder loads as tables in the tools users have: one folder per table, one schema per table."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import simulator
import simulator.api
from simulator.__main__ import main
from simulator.config import load_config
from simulator.scaleout import run_job
from simulator.shards import make_job
from simulator.staging import (KIND, LOG_TABLES, METRIC, REQUIRED_TABLES, STATUS, TABLES, StagingError,
                               open_staging)

CONFIG = load_config(None)
UTC = pl.Datetime("us", "UTC")
METADATA_KEYS = {"simulator.table", "simulator.seed", "simulator.config_hash", "simulator.interval_s",
                 "simulator.units"}
# columns shared by several tables have one type everywhere
SHARED = {"host": pl.Int32, "step": pl.Int32, "event_id": pl.Int64, "timestamp": UTC, "kind": KIND,
          "start_step": pl.Int32, "end_step": pl.Int32, "metric": METRIC, "status": STATUS}


@pytest.fixture(scope="module")
def staging(tmp_path_factory) -> Path:
    """A run with logs of three blocks (two hosts a block), so traces, labels, logs and alerts have several parts."""
    out = tmp_path_factory.mktemp("tables") / "training"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulator.api, "BLOCK_HOSTS", 2)
        assert main(["--samples", "300", "--seed", "8", "--output-dir", str(out), "--quiet", "--logs",
                     "--format", "json,parquet"]) == 0
    return out / "staging"


def parts(staging: Path, table: str) -> list[Path]:
    return sorted((staging / table).glob("*.parquet"))


def test_each_table_is_a_folder_of_numbered_parts_and_the_manifest_lists_them(staging):
    manifest = json.loads((staging / "manifest.json").read_bytes())
    assert manifest["format"] == "simulator-staging/2"
    assert sorted(p.name for p in staging.iterdir()) == sorted([*TABLES, "manifest.json"])
    assert [p.name for p in parts(staging, "traces")] == [f"traces-0000{i}.parquet" for i in range(3)]
    assert len(parts(staging, "labels")) == 3 and len(parts(staging, "events")) == len(parts(staging, "samples")) == 1
    assert len(parts(staging, "logs")) == len(parts(staging, "alerts")) == 3
    for table in TABLES:
        listed = sorted(n for n in manifest["files"] if n.startswith(table + "/"))
        assert listed == [p.relative_to(staging).as_posix() for p in parts(staging, table)]
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts(staging, table))
        assert manifest["tables"][table] == {"parts": len(listed), "rows": rows}


@pytest.mark.parametrize("table", TABLES)
def test_duckdb_polars_and_pyarrow_read_each_table_alike(staging, table):
    folder = staging / table
    rows = json.loads((staging / "manifest.json").read_bytes())["tables"][table]["rows"]
    assert duckdb.sql(f"SELECT count(*) FROM '{folder}/*.parquet'").fetchall()[0][0] == rows
    frame = pl.scan_parquet(folder / "*.parquet").collect()
    assert len(frame) == rows
    dataset = ds.dataset(folder, format="parquet")
    assert dataset.count_rows() == rows
    # one schema in every part: polars' and Arrow's view of each file equals the table's
    schemas = [pl.read_parquet_schema(p) for p in parts(staging, table)]
    assert all(s == frame.schema for s in schemas)
    arrow = [pq.read_schema(p).remove_metadata() for p in parts(staging, table)]
    assert all(a.equals(dataset.schema.remove_metadata()) for a in arrow)
    described = {row[0]: row[1] for row in duckdb.sql(f"DESCRIBE SELECT * FROM '{folder}/*.parquet'").fetchall()}
    assert list(described) == frame.columns
    for column, dtype in SHARED.items():
        if column in frame.schema:
            assert frame.schema[column] == dtype, (table, column)
    if "host" in described:
        assert described["host"] == "INTEGER" and described.get("step", "INTEGER") == "INTEGER"
    if "timestamp" in described:
        assert described["timestamp"] == "TIMESTAMP WITH TIME ZONE"


def test_metric_columns_have_one_type_in_traces_and_samples(staging):
    traces = pl.read_parquet_schema(parts(staging, "traces")[0])
    samples = pl.read_parquet_schema(parts(staging, "samples")[0])
    for spec in CONFIG.metrics:
        assert traces[spec.name] == samples[spec.name] == samples[f"base_{spec.name}"]
        assert traces[spec.name] == (pl.Int32 if spec.integer else pl.Float32), spec.name


def test_lists_enums_and_the_null_pattern_of_normal_samples(staging):
    events = pl.read_parquet(staging / "events" / "*.parquet")
    assert events.schema["affected_metrics"] == pl.List(METRIC)
    assert events.schema["primary_metric"] == events.schema["peak_metric"] == METRIC
    assert events.schema["start"] == events.schema["end"] == UTC
    assert (events["affected_metrics"].list.len() >= 1).all()
    assert events.select(pl.col("primary_metric").is_in(pl.col("affected_metrics").explode().implode())).to_series().all()
    samples = pl.read_parquet(staging / "samples" / "*.parquet")
    assert samples.schema["profile"] == pl.Enum([p.name for p in CONFIG.profiles])
    normal = samples["status"] == "normal"
    assert (samples["kind"].is_null() == normal).all() and (samples["event_id"].is_null() == normal).all()
    assert normal.sum() == 240 and samples.filter(~normal)["event_id"].is_in(events["event_id"].implode()).all()
    # the timestamp is the step's time, as in the traces
    joined = samples.join(pl.read_parquet(staging / "traces" / "*.parquet"), on=["host", "step"], suffix="_t")
    assert len(joined) == len(samples) and (joined["timestamp"] == joined["timestamp_t"]).all()


def test_every_file_carries_seed_config_hash_and_units(staging):
    units = {m.name: m.unit for m in CONFIG.metrics}
    for table in TABLES:
        for path in parts(staging, table):
            meta = {k.decode(): v.decode() for k, v in pq.read_metadata(path).metadata.items()}
            assert METADATA_KEYS <= set(meta), path
            assert meta["simulator.table"] == table and meta["simulator.seed"] == "8"
            assert meta["simulator.config_hash"] == CONFIG.config_hash
            assert json.loads(meta["simulator.units"]) == units
            assert float(meta["simulator.interval_s"]) == CONFIG.simulation.interval_s


# ----------------------------------------------------------------------------------------- reader
def test_the_reader_returns_the_tables_and_a_window(staging):
    run = simulator.open_staging(staging)
    assert isinstance(run, simulator.StagedRun)
    for table in TABLES:
        assert run.read(table).equals(pl.read_parquet(staging / table / "*.parquet"))
    window = run.window(host=3, step=40, before=5, after=2)
    assert window["host"].to_list() == [3] * 8 and window["step"].to_list() == list(range(35, 43))
    assert window.columns == run.read("traces").columns
    assert run.window(host=0, step=2, before=12)["step"].to_list() == [0, 1, 2]  # clipped to the trace
    last = run.steps_per_host - 1
    assert run.window(host=5, step=last, before=1, after=3)["step"].to_list() == [last - 1, last]
    points = pl.DataFrame({"key": ["a", "b"], "host": [1, 4], "step": [10, 20]})
    both = run.windows(points, before=2)
    assert both.select("key", "host", "step", "at").rows() == [
        ("a", 1, 8, 10), ("a", 1, 9, 10), ("a", 1, 10, 10), ("b", 4, 18, 20), ("b", 4, 19, 20), ("b", 4, 20, 20)]


def test_the_reader_refuses_a_damaged_staging_in_one_line(staging, tmp_path):
    import shutil

    copy = tmp_path / "staging"
    shutil.copytree(staging, copy)
    (copy / "labels" / "labels-00001.parquet").write_bytes(b"PAR1 damaged")
    with pytest.raises(StagingError, match=r"labels/labels-00001.parquet: \d+ bytes, manifest says \d+"):
        open_staging(copy)
    assert open_staging(copy, verify=False).read("traces").height > 0
    traces = copy / "traces" / "traces-00001.parquet"  # hosts 2 and 3
    pl.read_parquet(traces).filter(~((pl.col("host") == 2) & (pl.col("step") == 30))).write_parquet(traces)
    run = open_staging(copy, verify=False)
    assert len(run.window(host=2, step=20, before=5)) == 6
    with pytest.raises(StagingError, match="the traces lack host 2 step 30 .the window of step 33."):
        run.window(host=2, step=33, before=5)
    with pytest.raises(ValueError, match="unknown staging table 'trace'"):
        open_staging(staging).scan("trace")


def old_flat_staging(out: Path) -> Path:
    """The staging an earlier version wrote: every table's files side by side with the manifest."""
    from datasafe.integrity import file_record

    staging = out / "staging"
    staging.mkdir(parents=True)
    files = {}
    for name in ("traces-00000.parquet", "labels-00000.parquet", "events.parquet", "samples.parquet"):
        pl.DataFrame({"host": [0], "step": [0]}).write_parquet(staging / name)
        files[name] = file_record(staging / name)
    (staging / "manifest.json").write_text(json.dumps({"session_id": "sim-old", "seed": 1, "files": files}))
    return staging


def test_an_old_flat_staging_is_named_as_such_and_replaced_by_the_next_run(tmp_path, capsys):
    out = tmp_path / "training"
    staging = old_flat_staging(out)
    with pytest.raises(StagingError, match="staging of an older layout .*rerun python -m simulator generate"):
        open_staging(staging)
    assert main(["status", "--output-dir", str(out)]) == 0
    assert "of an older layout" in capsys.readouterr().out
    assert main(["--samples", "300", "--output-dir", str(out), "--quiet"]) == 0
    assert open_staging(staging).manifest["total_samples"] == 300
    assert not list(staging.glob("*.parquet"))
    assert main(["status", "--output-dir", str(out)]) == 0
    assert "come from the same run" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- logs and alerts
def traces_with_labels(staging: Path) -> pl.DataFrame:
    """The run's traces with a label_<metric> column per metric, rebuilt from the traces and labels tables:
    the frame `simulate` returns, from which `simulate_logs` works."""
    traces = pl.read_parquet(staging / "traces" / "*.parquet")
    labels = (pl.read_parquet(staging / "labels" / "*.parquet")
              .with_columns(pl.format("label_{}", pl.col("metric").cast(pl.Utf8)).alias("metric"))
              .pivot("metric", index=["host", "step"], values="event_id"))
    names = [f"label_{m.name}" for m in CONFIG.metrics]
    return (traces.join(labels, on=["host", "step"], how="left")
            .with_columns(*[(pl.col(c) if c in labels.columns else pl.lit(None)).fill_null(-1).cast(pl.Int64).alias(c)
                            for c in names])
            .sort("host", "step"))


@pytest.fixture(scope="module")
def simulated_logs(staging):
    """What simulator.logs and simulator.alerts produce for the staged run's traces and events, as a reference."""
    from simulator.alerts import evaluate_alerts
    from simulator.logs import simulate_logs

    traces = traces_with_labels(staging)
    events = pl.read_parquet(staging / "events" / "*.parquet").with_columns(pl.col("kind").cast(pl.Utf8))
    logs = simulate_logs(traces, events, seed=8)
    return traces, logs, evaluate_alerts(traces, logs, events)


def test_staged_logs_are_what_simulate_logs_gives_for_the_staged_traces(staging, simulated_logs):
    traces, logs, alerts = simulated_logs
    staged = pl.read_parquet(staging / "logs" / "*.parquet")
    assert len(staged) > 100_000 and staged.columns == ["host", "step", *logs.columns[1:]]
    assert staged.drop("step").equals(logs)
    assert staged["event_id"].is_not_null().any()
    # each line's step is the trace point whose interval (t - interval, t] holds it
    points = staged.join(traces.select("host", "step", pl.col("timestamp").alias("t")), on=["host", "step"])
    interval = pl.duration(seconds=CONFIG.simulation.interval_s)
    assert len(points) == len(staged)
    assert points.select(((pl.col("timestamp") <= pl.col("t")) & (pl.col("timestamp") > pl.col("t") - interval))
                         .all()).item()
    staged_alerts = pl.read_parquet(staging / "alerts" / "*.parquet")
    assert len(staged_alerts) > 10 and staged_alerts.columns == alerts.alerts.columns
    assert staged_alerts.cast({c: alerts.alerts.schema[c] for c in staged_alerts.columns}).equals(alerts.alerts)
    assert (staged_alerts["kind"].is_null() == (staged_alerts["outcome"] == "false_alarm")).all()
    manifest = json.loads((staging / "manifest.json").read_bytes())
    assert manifest["alerts_per_rule"] == {r.pop("rule"): r for r in alerts.summary.iter_rows(named=True)}


def test_the_reader_returns_a_hosts_log_lines_in_a_step_window(staging):
    from simulator.logs import render_lines

    run = open_staging(staging)
    staged = pl.read_parquet(staging / "logs" / "*.parquet")  # read whole: the reference
    assert run.has_logs
    for host, start, end in [(3, 500, 503), (0, 0, 2), (5, 2010, 2015), (2, 777, 777)]:
        got = run.logs(host, start, end)
        expected = staged.filter((pl.col("host") == host) & pl.col("step").is_between(start, end))
        assert len(expected) > 0 and got.drop("line").equals(expected), (host, start, end)
        assert got["line"].equals(render_lines(expected).alias("line"))
    assert f"cn{3:05d}" in " ".join(run.logs(3, 0, 287)["line"].to_list())  # syslog lines name the host
    points = pl.DataFrame({"key": ["a", "b", "c"], "host": [4, 1, 4], "step": [300, 20, 301]})
    both = run.log_windows(points, before=2, after=1)
    for key, host, step in points.iter_rows():
        mine = both.filter(pl.col("key") == key)
        expected = staged.filter((pl.col("host") == host) & pl.col("step").is_between(step - 2, step + 1))
        assert (mine["at"] == step).all() and mine.drop("key", "at", "line").equals(expected), key
    assert both["key"].to_list() == sorted(both["key"].to_list())  # the points' order
    with pytest.raises(ValueError, match="end step 4 before start step 5"):
        run.logs(1, 5, 4)


def test_a_run_without_logs_stages_none_and_the_reader_says_so(tmp_path):
    out = tmp_path / "training"
    assert main(["--samples", "100", "--seed", "8", "--output-dir", str(out), "--quiet"]) == 0
    run = open_staging(out / "staging")
    assert not run.has_logs and not (out / "staging" / "logs").exists()
    assert "alerts_per_rule" not in run.manifest and set(run.manifest["tables"]) == set(REQUIRED_TABLES)
    with pytest.raises(StagingError, match="staged no logs; rerun python -m simulator generate --logs"):
        run.logs(0, 0, 3)
    with pytest.raises(StagingError, match="staged no logs"):
        run.log_excerpts(pl.DataFrame({"host": [0], "step": [5]}), before=3)
    assert not {"log_total", "log_lines"} & set(run.read("samples").columns)


def _json_samples(out: Path) -> list[dict]:
    return json.loads((out / "metrics_dataset.json").read_bytes())["training_samples"]


def test_the_samples_carry_the_excerpt_of_their_context_window(staging):
    """Each sample of a run with logs carries at most EXCERPT_LINES lines of its host whose step lies in its
    context window (context_steps points, the sample's last), in time order: the lines the staging reader's
    excerpt gives for that window (the prompts' choice), as time, source, severity and message."""
    from simulator.logs import EXCERPT_LINES

    before = CONFIG.simulation.context_steps - 1
    samples = _json_samples(staging.parent)
    run = open_staging(staging)
    table = run.read("samples")
    assert [s["id"] for s in samples] == table["id"].to_list()
    staged = pl.read_parquet(staging / "logs" / "*.parquet")  # read whole: the reference
    staged = staged.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("time"),
                                 pl.col("source", "severity").cast(pl.Utf8))
    picked = run.log_excerpts(table.select("host", "step"), before=before)
    shown = 0
    for i, (sample, host, step) in enumerate(zip(samples, table["host"], table["step"])):
        excerpt = sample["logs"]
        assert list(sample).index("logs") == list(sample).index("targets") + 1 and set(excerpt) == {"total", "lines"}
        window = staged.filter((pl.col("host") == host) & pl.col("step").is_between(step - before, step))
        assert excerpt["total"] == len(window) and len(excerpt["lines"]) == min(EXCERPT_LINES, len(window))
        fields = ["time", "source", "severity", "message"]
        assert all(list(line) == fields for line in excerpt["lines"])
        rows = [window.select(fields).row(k) for k in range(len(window))]
        at = [rows.index(tuple(line[f] for f in fields)) for line in excerpt["lines"]]  # lines of that window ...
        assert at == sorted(at) and len(set(at)) == len(at)  # ... in their file order
        mine = picked.filter(pl.col("point") == i)
        assert [line["message"] for line in excerpt["lines"]] == mine["message"].to_list()
        shown += len(at)
    assert shown > 200
    # the staged samples table and the training Parquet carry the same excerpts
    assert table["log_total"].to_list() == [s["logs"]["total"] for s in samples]
    assert table["log_lines"].to_list() == [s["logs"]["lines"] for s in samples]
    rows = (pl.read_parquet(staging.parent / "metrics_dataset" / "data" / "*.parquet")
            .select("id", "log_total", "log_lines"))
    by_id = {s["id"]: s["logs"] for s in samples}
    assert all(by_id[i] == {"total": t, "lines": lines} for i, t, lines in rows.iter_rows())


def test_staged_logs_and_alerts_do_not_depend_on_workers_blocks_or_parts(staging, tmp_path):
    """The same run with one worker thread gives the same bytes; cut into other blocks and log parts, the
    same tables."""
    import simulator.staging

    one = tmp_path / "one"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulator.api, "BLOCK_HOSTS", 2)
        assert main(["--samples", "300", "--seed", "8", "--output-dir", str(one), "--quiet", "--logs",
                     "--workers", "1"]) == 0
    for table in LOG_TABLES:
        assert [p.read_bytes() for p in parts(one / "staging", table)] == [p.read_bytes() for p in parts(staging, table)]
    dataset = (staging.parent / "metrics_dataset.json").read_bytes()
    drop_clock = lambda data: data[data.index(b'"generator"'):]  # noqa: E731 (generated_at is the clock time)
    assert drop_clock((one / "metrics_dataset.json").read_bytes()) == drop_clock(dataset)
    other = tmp_path / "other"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulator.staging, "LOG_PART_HOST_STEPS", 2016)  # one host a logs part
        assert main(["--samples", "300", "--seed", "8", "--output-dir", str(other), "--quiet", "--logs"]) == 0
    assert len(parts(other / "staging", "logs")) == 6 and len(parts(other / "staging", "alerts")) == 1
    for table in LOG_TABLES:
        assert pl.read_parquet(other / "staging" / table).equals(pl.read_parquet(staging / table))
    # one host a logs part: each sample's excerpt is still the reader's choice over the whole staging
    samples, run = _json_samples(other), open_staging(other / "staging")
    picked = run.log_excerpts(run.read("samples").select("host", "step"), before=CONFIG.simulation.context_steps - 1)
    messages = picked.group_by("point", maintain_order=True).agg("message")["message"].to_list()
    assert [[line["message"] for line in s["logs"]["lines"]] for s in samples] == messages


def test_logs_add_only_the_excerpts_to_the_dataset(staging, tmp_path):
    """Without --logs the same run writes the same samples but for their `logs`, and no excerpt columns."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulator.api, "BLOCK_HOSTS", 2)
        assert main(["--samples", "300", "--seed", "8", "--output-dir", str(tmp_path), "--quiet",
                     "--format", "json,parquet"]) == 0
    plain = _json_samples(tmp_path)
    assert not any("logs" in s for s in plain)
    assert plain == [{k: v for k, v in s.items() if k != "logs"} for s in _json_samples(staging.parent)]
    rows = pl.read_parquet(tmp_path / "metrics_dataset" / "data" / "*.parquet")
    assert not {"log_total", "log_lines"} & set(rows.columns)


# ------------------------------------------------------------------------------ traces exports
def test_sharded_events_parts_share_the_staging_schema_and_metadata(tmp_path):
    job = make_job(CONFIG, 6, 120, 4, anomalies=5, shard_hosts=3)
    run_job(job, tmp_path / "out")
    events = sorted((tmp_path / "out").glob("events-*.parquet"))
    assert len(events) == 2 and all(pl.read_parquet_schema(p) == pl.read_parquet_schema(events[0]) for p in events)
    schema = pl.read_parquet_schema(events[0])
    assert schema["host"] == pl.Int32 and schema["kind"] == KIND and schema["affected_metrics"] == pl.List(METRIC)
    assert schema["profile"] == pl.Enum([p.name for p in CONFIG.profiles])
    for path in [*events, *(tmp_path / "out").glob("part-*.parquet")]:
        meta = pq.read_metadata(path).metadata
        assert meta[b"simulator.seed"] == b"4" and meta[b"simulator.config_hash"] == CONFIG.config_hash.encode()
    assert duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'out'}/events-*.parquet'").fetchall()[0][0] == 5


def test_single_file_traces_carry_the_metadata(tmp_path):
    target = tmp_path / "x.parquet"
    assert main(["traces", "--hosts", "2", "--steps", "50", "--seed", "6", "--output", str(target), "--quiet"]) == 0
    for path in (target, tmp_path / "x.events.parquet"):
        meta = pq.read_metadata(path).metadata
        assert meta[b"simulator.seed"] == b"6" and json.loads(meta[b"simulator.units"])["cpu_usage"] == "percent"
    assert pl.read_parquet_schema(tmp_path / "x.events.parquet")["kind"] == KIND


def test_a_swap_cut_between_its_renames_is_finished_by_the_recovery(tmp_path):
    """staging/ gone and staging.old/ whole (a crash between the renames): the old folder comes back;
    a staging.old/ without its manifest is not taken for one; an .old beside a finished swap is dropped."""
    from datasafe import swap_folder
    from simulator.staging import recover_staging

    old = tmp_path / "staging.old"
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    assert recover_staging(tmp_path) and (tmp_path / "staging" / "manifest.json").exists() and not old.exists()

    old.mkdir()
    assert not recover_staging(tmp_path) and not old.exists()  # staging/ is in place: .old is leftover

    (tmp_path / "staging").rename(tmp_path / "kept")
    old.mkdir()
    (old / "part.parquet").write_text("")
    assert not recover_staging(tmp_path) and not (tmp_path / "staging").exists()

    new = tmp_path / "staging.partial"
    new.mkdir()
    (new / "manifest.json").write_text('{"new": 1}')
    seen = []
    swap_folder(new, tmp_path / "staging", settle=lambda f: seen.append((f / "manifest.json").read_text()))
    assert seen == ['{"new": 1}'] and not old.exists() and not new.exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_trace_file_reads_back_as_written(tmp_path, suffix):
    """The single-file traces and their events, through the reader beside the writer: same values, UTC
    times, the event lists whole, and every labelled row inside an event of its host."""
    from simulator.tracefile import read_trace_file, write_trace_file

    config = simulator.load_config()
    written = write_trace_file(tmp_path / f"x{suffix}", 3, 300, config=config, seed=5, anomalies=3)
    traces, events = read_trace_file(written.path)
    assert (written.rows, written.events) == (traces.height, events.height) == (900, 3)
    assert traces.schema["timestamp"] == events.schema["start"] == pl.Datetime("us", "UTC")
    assert events.schema["affected_metrics"] in (pl.List(pl.Utf8), pl.List(METRIC))
    inside = traces.filter(pl.col("is_anomaly") == 1).join(events, on="host").filter(
        pl.col("timestamp").is_between(pl.col("start"), pl.col("end"), closed="left"))
    assert inside.select("host", "timestamp").n_unique() == traces["is_anomaly"].sum() > 0
    other, _ = read_trace_file(write_trace_file(tmp_path / f"y{suffix}", 3, 300, config=config, seed=5,
                                                anomalies=3).path)
    assert other.equals(traces)
