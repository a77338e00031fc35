"""The command line: bad input stops cleanly; the sample job writes the dataset, backups and staging."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import example, given, settings, strategies as st

import simulator
from datasafe import KEEP_BACKUPS, list_backups
from simulator.__main__ import main
from simulator.config import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).resolve().parent.parent
DATASET = "metrics_dataset.json"
SMALL = ["--samples", "300", "--quiet"]
STAGING_ONE_BLOCK = {"manifest.json", "traces/traces-00000.parquet", "labels/labels-00000.parquet",
                     "events/events-00000.parquet", "samples/samples-00000.parquet"}
OLD_MTIME_NS = 1_600_000_000_000_000_000  # 2020: any rewrite of a file would move its mtime


def run(argv) -> tuple[int, str, str]:
    """`python -m simulator argv` in-process: (exit status, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors and --help
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def training_part(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b',"training_samples":')
    assert sep and head.startswith(b'{"metadata":')
    return body


def snapshot(root: Path) -> dict:
    """Every file and directory under `root` with its bytes and mtime."""
    return {p.relative_to(root): (None if p.is_dir() else p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def make_previous_outputs(out: Path) -> dict:
    """A previous run's outputs (dataset, one backup, staging) with an old mtime; returns their snapshot."""
    staging = out / "staging"
    staging.mkdir(parents=True)
    files = {
        out / DATASET: b'{"metadata": {"seed": 1}, "training_samples": []}\n',
        out / "metrics_dataset.20250101T000000000000Z.bak.json": b'{"old": true}\n',
        staging / "traces-00000.parquet": b"PAR1 previous traces",
        staging / "labels-00000.parquet": b"PAR1 previous labels",
        staging / "manifest.json": b'{"previous": true}',
    }
    for path, data in files.items():
        path.write_bytes(data)
    for path in [*files, staging, out]:
        os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    return snapshot(out)


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    assert code == 2, (code, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("python -m simulator") and ": error: " in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ------------------------------------------------------------------------------------ bad input
def _bad_config(edit):
    def build(tmp_path: Path):
        data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
        edit(data)
        path = tmp_path / "metrics.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path
    return build


def _raw_config(data: bytes):
    def build(tmp_path: Path):
        path = tmp_path / "metrics.yaml"
        path.write_bytes(data)
        return path
    return build


_SHIPPED = DEFAULT_CONFIG_PATH.read_bytes()

# (id, extra argv, config builder or None, text the error must name; "{config}" is the config path)
BAD_INPUT = [
    ("samples-zero", ["--samples", "0"], None, ["--samples", "at least 1"]),
    ("samples-negative", ["--samples=-3"], None, ["--samples", "-3"]),
    ("samples-not-a-number", ["--samples", "many"], None, ["--samples", "'many'"]),
    ("ratio-above-one", ["--anomaly-ratio", "1.5"], None, ["--anomaly-ratio", "1.5"]),
    ("ratio-negative", ["--anomaly-ratio=-0.1"], None, ["--anomaly-ratio", "-0.1"]),
    ("ratio-nan", ["--anomaly-ratio", "nan"], None, ["--anomaly-ratio", "nan"]),
    ("ratio-inf", ["--anomaly-ratio", "inf"], None, ["--anomaly-ratio", "inf"]),
    ("workers-zero", ["--workers", "0"], None, ["--workers", "at least 1"]),
    ("seed-negative", ["--seed=-1"], None, ["--seed", "-1"]),
    ("unknown-option", ["--colour", "red"], None, ["unrecognized arguments: --colour red"]),
    ("config-missing", [], lambda tmp: tmp / "nope.yaml", ["{config}: file not found"]),
    ("unknown-metric", [], _bad_config(lambda d: d["metrics"].__setitem__("gpu_usage", copy.deepcopy(d["metrics"]["cpu_usage"]))),
     ["{config}: metrics.gpu_usage: unknown metric"]),
    ("unknown-anomaly-kind", [], _bad_config(lambda d: d["anomalies"].__setitem__(
        "solar_flare", copy.deepcopy(d["anomalies"]["disk_full"]))), ["{config}: anomalies.solar_flare: unknown anomaly kind"]),
    ("wrong-type", [], _bad_config(lambda d: d["profiles"]["web_api"].__setitem__("cpu_level", "high")),
     ["{config}: profiles.web_api.cpu_level: expected a number"]),
    ("missing-key", [], _bad_config(lambda d: d["anomalies"]["cpu_spike"].pop("severity")),
     ["{config}: anomalies.cpu_spike.severity: missing"]),
    ("unknown-key", [], _bad_config(lambda d: d["simulation"].__setitem__("anomaly_rato", 0.3)),
     ["{config}: simulation.anomaly_rato: unknown key"]),
    ("nan", [], _bad_config(lambda d: d["simulation"].__setitem__("anomaly_ratio", float("nan"))),
     ["{config}: simulation.anomaly_ratio: must be finite"]),
    ("inf", [], _bad_config(lambda d: d["metrics"]["cpu_usage"].__setitem__("max", float("inf"))),
     ["{config}: metrics.cpu_usage.max: must be finite"]),
    ("huge-int", [], _bad_config(lambda d: d["simulation"].__setitem__("seed", 10**400)),
     ["{config}: simulation.seed: ", "outside"]),
    ("malformed-yaml", [], _raw_config(_SHIPPED.replace(b"  interval_s: 300", b"  interval_s: [300", 1)),
     ["{config}: malformed YAML: line "]),
    ("non-utf8", [], _raw_config(_SHIPPED.replace(b"# Metrics", "# Métrics".encode("latin-1"), 1)),
     ["{config}: not UTF-8 text"]),
    ("alias", [], _raw_config(_SHIPPED.replace(b"  web_api:\n", b"  web_api: &web\n", 1)
                              + b"\nextra: *web\n"), ["{config}: malformed YAML: ", "aliases"]),
    ("bad-date", [], _raw_config(_SHIPPED.replace(b'"2026-01-05T00:00:00Z"', b"2026-13-05", 1)),
     ["{config}: malformed YAML: bad value"]),
]


@pytest.mark.parametrize("argv,build_config,needles", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_leaves_outputs_untouched(tmp_path, argv, build_config, needles):
    out = tmp_path / "out"
    before = make_previous_outputs(out)
    argv = [*SMALL, "--output-dir", out, *argv]
    if build_config is not None:
        config_path = build_config(tmp_path)
        argv += ["--config", config_path]
        needles = [n.replace("{config}", str(config_path)) for n in needles]
    assert_one_line_error(*run(argv), *needles)
    assert snapshot(out) == before


@settings(max_examples=25)
@given(samples=st.integers(max_value=0),
       ratio=st.one_of(st.floats(max_value=-1e-12), st.floats(min_value=1 + 1e-12),
                       st.sampled_from([math.nan, math.inf, -math.inf])),
       which=st.sampled_from(["samples", "ratio"]))
@example(samples=0, ratio=-0.0001, which="samples")
@example(samples=0, ratio=1.0000001, which="ratio")
def test_any_non_positive_samples_or_ratio_outside_0_1_is_rejected(samples, ratio, which):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        before = make_previous_outputs(out)
        bad = [f"--samples={samples}"] if which == "samples" else [f"--anomaly-ratio={ratio!r}"]
        needle = "--samples" if which == "samples" else "--anomaly-ratio"
        assert_one_line_error(*run(["--quiet", "--output-dir", out, *bad]), needle)
        assert snapshot(out) == before


def test_output_dir_that_cannot_be_a_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    assert_one_line_error(*run([*SMALL, "--output-dir", blocker]), "--output-dir", str(blocker))
    assert_one_line_error(*run([*SMALL, "--output-dir", blocker / "sub"]), "--output-dir", str(blocker))
    assert blocker.read_bytes() == b"x" and sorted(tmp_path.iterdir()) == [blocker]


def test_error_text_with_a_line_break_stays_on_one_line(tmp_path):
    odd = tmp_path / "a\nb.yaml"
    err = assert_one_line_error(*run([*SMALL, "--output-dir", tmp_path / "out", "--config", odd]))
    assert "a\\nb.yaml: file not found" in err


def test_api_rejects_bad_workers_before_touching_staging(tmp_path, config):
    before = make_previous_outputs(tmp_path)
    with pytest.raises(simulator.SimulatorError, match="--workers"):
        simulator.generate_samples(10, config=config, workers=0, staging_dir=tmp_path)
    assert snapshot(tmp_path) == before


# -------------------------------------------------------------------------------------- help
def test_help_runs_as_a_module_and_lists_the_options():
    proc = subprocess.run([sys.executable, "-m", "simulator", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for option in ("--samples", "--anomaly-ratio", "--seed", "--config", "--output-dir", "--workers"):
        assert option in proc.stdout, option
    assert "traces" in proc.stdout


def test_traces_help_lists_its_options():
    code, out, _ = run(["traces", "--help"])
    assert code == 0
    for option in ("--hosts", "--steps", "--output", "--seed", "--config", "--workers"):
        assert option in out


# --------------------------------------------------------------------------------- generate
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One `--samples 300` run, shared read-only by the tests below: (output dir, parsed dataset)."""
    out = tmp_path_factory.mktemp("small") / "training"
    code, stdout, err = run([*SMALL, "--output-dir", out])
    assert (code, stdout, err) == (0, "", "")
    return out, json.loads((out / DATASET).read_bytes())


def test_dataset_has_exactly_the_schema(small_run, config):
    out, data = small_run
    assert set(data) == {"metadata", "training_samples"}
    meta = data["metadata"]
    assert set(meta) == {"generated_at", "generator", "session_id", "total_samples", "anomaly_ratio",
                         "config_hash", "seed", "generation_stats", "evidence"}
    assert set(meta["generation_stats"]) == {"normal_samples", "anomaly_samples", "anomaly_types"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["generated_at"])
    assert meta["generator"] == f"simulator {simulator.__version__}"
    assert meta["total_samples"] == 300 and meta["anomaly_ratio"] == config.simulation.anomaly_ratio == 0.2
    assert meta["config_hash"] == config.config_hash and meta["seed"] == config.simulation.seed
    assert set(meta["generation_stats"]["anomaly_types"]) == {a.kind for a in config.anomalies}

    samples = data["training_samples"]
    assert len(samples) == 300
    start = datetime.fromtimestamp(config.simulation.start_epoch_s, timezone.utc)
    end = start + timedelta(days=config.simulation.trace_days)
    kinds = {a.kind for a in config.anomalies}
    for s in samples:
        assert list(s)[:8] == ["id", "timestamp", "metrics", "status", "anomaly_type", "explanation",
                               "session_id", "batch_id"]  # the seed's keys, as they were
        assert list(s)[8:] == ["host", "targets", "context", "history"]  # the evidence (tests/test_evidence.py)
        assert tuple(s["metrics"]) == simulator.METRICS
        for name, value in s["metrics"].items():
            spec = config.metric(name)
            if spec.integer:
                assert type(value) is int, (name, value)
            else:
                assert type(value) is float and math.isfinite(value), (name, value)
            assert spec.lower <= value <= spec.upper, (name, value)
        assert s["status"] in ("normal", "anomaly")
        assert (s["anomaly_type"] is None) == (s["status"] == "normal")
        assert s["anomaly_type"] is None or s["anomaly_type"] in kinds
        assert isinstance(s["explanation"], str) and len(s["explanation"]) > 20
        assert s["session_id"] == meta["session_id"] and s["id"].startswith(meta["session_id"] + "-")
        assert re.fullmatch(r"batch-\d{5}", s["batch_id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["timestamp"])
        assert start <= datetime.fromisoformat(s["timestamp"].replace("Z", "+00:00")) < end
    assert len({s["id"] for s in samples}) == len(samples)


def test_counts_in_metadata_match_the_samples(small_run):
    _, data = small_run
    samples, stats = data["training_samples"], data["metadata"]["generation_stats"]
    anomalous = [s for s in samples if s["status"] == "anomaly"]
    assert stats["anomaly_samples"] == len(anomalous) == round(300 * 0.2)
    assert stats["normal_samples"] == len(samples) - len(anomalous)
    by_kind = {k: sum(s["anomaly_type"] == k for s in anomalous) for k in stats["anomaly_types"]}
    assert stats["anomaly_types"] == by_kind
    assert sum(n > 0 for n in by_kind.values()) >= 4  # the kinds are mixed, not all one kind


def staging_files(staging: Path) -> set[str]:
    return {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()}


def test_staging_holds_the_runs_parquet_and_manifest(small_run, config):
    out, data = small_run
    staging = out / "staging"
    assert staging_files(staging) == STAGING_ONE_BLOCK  # 6 hosts: one block
    hosts = math.ceil(300 / config.simulation.samples_per_host)
    steps = round(config.simulation.trace_days * 86400 / config.simulation.interval_s)
    traces = pl.read_parquet(staging / "traces" / "traces-00000.parquet")
    assert traces.columns[:3] == ["host", "step", "timestamp"] and tuple(traces.columns[3:]) == simulator.METRICS
    assert len(traces) == hosts * steps
    labels = pl.read_parquet(staging / "labels" / "*.parquet")
    events = pl.read_parquet(staging / "events" / "*.parquet")
    assert set(labels.columns) == {"host", "step", "metric", "event_id"}
    assert len(events) == data["metadata"]["generation_stats"]["anomaly_samples"]
    assert set(labels["event_id"].unique().to_list()) <= set(events["event_id"].to_list())
    assert len(labels) > 0
    samples = pl.read_parquet(staging / "samples" / "*.parquet")
    assert sorted(samples["id"].to_list()) == sorted(s["id"] for s in data["training_samples"])
    manifest = json.loads((staging / "manifest.json").read_bytes())
    assert manifest["total_samples"] == 300 and manifest["hosts"] == hosts
    assert manifest["steps_per_host"] == steps and manifest["session_id"] == data["metadata"]["session_id"]


def test_a_new_run_replaces_the_staging_of_the_last(tmp_path):
    out = tmp_path / "out"
    make_previous_outputs(out)
    (out / "staging" / "traces-00007.parquet").write_bytes(b"stale block of a bigger run")
    assert run([*SMALL, "--output-dir", out])[0] == 0
    assert staging_files(out / "staging") == STAGING_ONE_BLOCK
    assert json.loads((out / "staging" / "manifest.json").read_bytes())["total_samples"] == 300


@settings(max_examples=6)
@given(n=st.integers(1, 400), ratio=st.floats(0, 1))
@example(n=300, ratio=0.0)
@example(n=120, ratio=1.0)
@example(n=5, ratio=0.5)  # round half to even: 2 anomalies
@example(n=1, ratio=0.6)
def test_anomaly_count_is_round_n_times_ratio(n, ratio):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        code, _, err = run(["--samples", n, "--anomaly-ratio", repr(ratio), "--quiet", "--output-dir", out])
        assert code == 0, err
        data = json.loads((out / DATASET).read_bytes())
    samples, meta = data["training_samples"], data["metadata"]
    anomalies = sum(s["status"] == "anomaly" for s in samples)
    assert len(samples) == meta["total_samples"] == n
    assert anomalies == meta["generation_stats"]["anomaly_samples"] == round(n * ratio)
    assert meta["anomaly_ratio"] == ratio


def test_a_staging_that_fails_leaves_the_previous_dataset(tmp_path, monkeypatch):
    """The staging's last writes run while the JSON is encoded; the JSON replaces the old one only once
    the staging is in place."""
    from simulator.staging import Staging

    out = tmp_path / "out"
    before = make_previous_outputs(out)

    def failing_finish(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(self.dir / "samples"))

    monkeypatch.setattr(Staging, "finish", failing_finish)
    code, _, err = run([*SMALL, "--output-dir", out])
    assert code == 1 and "No space left on device" in err
    assert (out / DATASET).read_bytes() == before[Path(DATASET)][0]
    assert not list(out.glob("*.tmp*")) and not list(out.glob(".*tmp*"))


def test_an_export_that_fails_reports_its_own_error_after_the_staging_finishes(tmp_path, monkeypatch):
    """Both fail: the export's error is the one the command reports (the staging's is its own matter)."""
    import simulator.export
    from simulator.staging import Staging

    out = tmp_path / "out"
    before = make_previous_outputs(out)

    def failing_finish(self, *args, **kwargs):
        raise OSError(5, "staging went wrong", str(self.dir / "samples"))

    def failing_export(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / DATASET))

    monkeypatch.setattr(Staging, "finish", failing_finish)
    monkeypatch.setattr(simulator.export, "write_metrics_dataset", failing_export)
    code, _, err = run([*SMALL, "--output-dir", out])
    assert code == 1 and "No space left on device" in err and "staging went wrong" not in err
    assert (out / DATASET).read_bytes() == before[Path(DATASET)][0]


# ------------------------------------------------------------------------ backups and determinism
def test_second_run_backs_up_the_first_and_only_three_backups_are_kept(tmp_path):
    out = tmp_path / "out"
    datasets = []
    for seed in range(1, 6):
        assert run([*SMALL, "--seed", seed, "--output-dir", out])[0] == 0
        datasets.append((out / DATASET).read_bytes())
        backups = list_backups(out / DATASET)
        assert len(backups) == min(seed - 1, KEEP_BACKUPS)
        if seed == 2:
            assert backups[0].read_bytes() == datasets[0]
    assert KEEP_BACKUPS == 3
    for b in backups:
        assert re.fullmatch(r"metrics_dataset\.\d{8}T\d{12}Z\.bak\.json", b.name)
    # the newest three previous datasets, oldest first
    assert [b.read_bytes() for b in backups] == datasets[1:4]
    assert [json.loads(b.read_bytes())["metadata"]["seed"] for b in backups] == [2, 3, 4]
    assert json.loads(datasets[-1])["metadata"]["seed"] == 5
    assert sorted(p.name for p in out.iterdir()) == sorted([DATASET, "staging", *(b.name for b in backups)])


def test_same_seed_same_training_samples_bytes(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    raws = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        assert run([*SMALL, "--seed", seed, "--output-dir", tmp_path / name])[0] == 0
        raws.append((tmp_path / name / DATASET).read_bytes())
    assert training_part(raws[0]) == training_part(raws[1])
    assert training_part(raws[0]) != training_part(raws[2])  # the comparison can tell runs apart


def test_source_date_epoch_makes_whole_files_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    out = tmp_path / "out"
    assert run([*SMALL, "--output-dir", out])[0] == 0
    first = (out / DATASET).read_bytes()
    assert run([*SMALL, "--output-dir", out])[0] == 0
    second = (out / DATASET).read_bytes()
    assert first == second
    assert list_backups(out / DATASET)[-1].read_bytes() == first
    assert json.loads(second)["metadata"]["generated_at"] == "2026-01-01T00:00:00Z"


def test_worker_count_does_not_change_the_output(tmp_path):
    datasets, events = [], []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert run([*SMALL, "--workers", workers, "--output-dir", out])[0] == 0
        datasets.append(training_part((out / DATASET).read_bytes()))
        events.append(pl.read_parquet(out / "staging" / "events" / "*.parquet"))
    assert datasets[0] == datasets[1]
    assert events[0].equals(events[1])


# ---------------------------------------------------------------------------------- traces
def test_traces_csv_layout(tmp_path, config):
    target = tmp_path / "x.csv"
    code, out, err = run(["traces", "--hosts", 3, "--steps", 300, "--output", target, "--quiet"])
    assert (code, out, err) == (0, "", "")
    with open(target, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestamp", "host", *simulator.METRICS, "is_anomaly"]
    body = rows[1:]
    assert len(body) == 900
    assert {r[1] for r in body} == {"0", "1", "2"}
    flags = [r[-1] for r in body]
    assert set(flags) <= {"0", "1"} and "1" in flags
    start = datetime.fromtimestamp(config.simulation.start_epoch_s, timezone.utc)
    assert body[0][0].endswith("+00:00") and datetime.fromisoformat(body[0][0]) == start
    assert datetime.fromisoformat(body[299][0]) == start + timedelta(seconds=299 * config.simulation.interval_s)
    for r in body[:50]:
        for name, cell in zip(simulator.METRICS, r[2:-1]):
            value = float(cell)
            assert math.isfinite(value)
            if config.metric(name).integer:
                assert re.fullmatch(r"-?\d+", cell), (name, cell)
    events = pl.read_csv(tmp_path / "x.events.csv", try_parse_dates=True)
    assert len(events) >= 1  # default: events covering simulation.trace_anomaly_share of the points
    assert abs(flags.count("1") / len(flags) - config.simulation.trace_anomaly_share) <= 0.01
    assert events.schema["start"] == pl.Datetime("us", "UTC")  # the zone is written, as in the traces


def test_traces_parquet(tmp_path):
    target = tmp_path / "x.parquet"
    assert run(["traces", "--hosts", 3, "--steps", 300, "--output", target, "--quiet", "--anomalies", 5])[0] == 0
    traces = pl.read_parquet(target)
    assert len(traces) == 900
    assert {"timestamp", "host", "is_anomaly", *simulator.METRICS} <= set(traces.columns)
    assert traces["is_anomaly"].any()
    assert len(pl.read_parquet(tmp_path / "x.events.parquet")) == 5


def test_traces_reports_the_anomaly_share_it_reached(tmp_path):
    target = tmp_path / "x.parquet"
    code, out, _ = run(["traces", "--hosts", 10, "--steps", 2700, "--interval-s", 1, "--anomaly-share", 0.1,
                        "--output", target])
    assert code == 0
    share = pl.read_parquet(target)["is_anomaly"].mean()
    assert f"anomalous points: {share:.2%} (asked: 10.00%)" in out
    assert abs(share - 0.1) <= 0.02


@pytest.mark.parametrize("argv,needle", [
    (["--output", "{tmp}/x.txt"], "--output"),
    (["--output", "{tmp}/x.json"], "--output"),
    (["--output", "{tmp}/x.csv", "--hosts", "0"], "--hosts"),
    (["--output", "{tmp}/x.csv", "--steps", "-1"], "--steps"),
    (["--output", "{tmp}/x.csv", "--interval-s", "0"], "--interval-s"),
    (["--output", "{tmp}/x.csv", "--workers", "0"], "--workers"),
    (["--output", "{tmp}/x.csv", "--config", "{tmp}/none.yaml"], "none.yaml: file not found"),
    (["--output", "{tmp}/x.csv", "--anomaly-share", "0.7"], "--anomaly-share: must be between 0 and 0.5"),
    (["--output", "{tmp}/x.csv", "--steps", "10", "--anomaly-share", "0.01"], "less than one anomalous point"),
    (["--output", "{tmp}/x.csv", "--anomaly-share", "0.1", "--anomalies", "3"], "--anomalies, --anomaly-share"),
    (["--output", "{tmp}/sharded", "--anomaly-share", "0.9"], "--anomaly-share: must be between"),
], ids=["txt-suffix", "json-suffix", "hosts-zero", "steps-negative", "interval-zero", "workers-zero", "config",
        "share-too-high", "share-below-one-point", "share-and-count", "sharded-share-too-high"])
def test_traces_bad_input(tmp_path, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    base = {"--hosts": "3", "--steps": "300"}
    for i in range(0, len(argv), 2):
        base.pop(argv[i], None)
    full = ["traces", "--quiet", *[x for kv in base.items() for x in kv], *argv]
    assert_one_line_error(*run(full), needle)
    assert list(tmp_path.iterdir()) == []


HUGE = 10**400


@pytest.mark.parametrize("argv,needle", [
    (["--samples", str(HUGE)], "got about 10^400"),
    (["--samples", str(-HUGE)], "got about -10^400"),
    (["traces", "--hosts", str(HUGE), "--steps", "10", "--output", "{tmp}/x.parquet"], "--hosts"),
    (["traces", "--hosts", "2", "--steps", str(HUGE), "--output", "{tmp}/x.parquet"], "--steps"),
], ids=["samples-huge", "samples-huge-negative", "hosts-huge", "steps-huge"])
def test_numbers_of_hundreds_of_digits_are_refused_in_one_short_line(tmp_path, argv, needle):
    err = assert_one_line_error(*run([a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--quiet"]), needle)
    assert len(err) < 400
    assert list(tmp_path.iterdir()) == []


def _link_out(rel: str):
    def setup(out: Path, elsewhere: Path) -> Path:
        path = out / rel
        target = elsewhere / path.name
        if path.is_dir():
            path.rename(target)
        else:
            target.write_bytes(b'{"not": "yours"}\n')
            path.unlink(missing_ok=True)
        path.symlink_to(target)
        return path
    return setup


@pytest.mark.parametrize("rel", [DATASET, "staging", "staging/manifest.json", "staging.partial",
                                 "metrics_dataset.20250101T000000000000Z.bak.json"])
def test_an_output_linked_out_of_the_folder_is_refused_and_nothing_is_touched(tmp_path, rel):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    make_previous_outputs(out)
    elsewhere.mkdir()
    if rel == "staging.partial":
        (out / rel).mkdir()
    link = _link_out(rel)(out, elsewhere)
    before = snapshot(tmp_path)
    for command in ([*SMALL, "--output-dir", out], ["restore", "--output-dir", out]):
        assert_one_line_error(*run(command), f"--output-dir: {link} is a symbolic link")
    assert snapshot(tmp_path) == before


def test_a_trace_file_that_is_a_link_is_refused(tmp_path):
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"not yours")
    (tmp_path / "x.parquet").symlink_to(victim)
    assert_one_line_error(*run(["traces", "--quiet", "--hosts", "2", "--steps", "10", "--output",
                                tmp_path / "x.parquet"]), "is a symbolic link")
    assert victim.read_bytes() == b"not yours"


def test_the_output_folder_itself_may_be_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "training").symlink_to(tmp_path / "real")
    code, _, err = run([*SMALL, "--output-dir", tmp_path / "training"])
    assert code == 0, err
    assert (tmp_path / "real" / DATASET).is_file() and (tmp_path / "training").is_symlink()


# ------------------------------------------------------------------------- exact options, version, pipes
@pytest.mark.parametrize("argv,needle", [
    (["--sample", "100"], "unrecognized arguments: --sample 100"),
    (["generate", "--sample", "100"], "unrecognized arguments: --sample 100"),
    (["--output", "{out}"], "unrecognized arguments: --output"),
    (["traces", "--host", "3", "--steps", "10", "--output", "{out}/x.csv"], "--hosts"),
    (["status", "--output-d", "{out}"], "unrecognized arguments: --output-d"),
    (["restore", "--output", "{out}"], "unrecognized arguments: --output"),
], ids=["top", "generate", "output-dir-prefix", "traces", "status", "restore"])
def test_abbreviated_options_are_errors_and_nothing_is_touched(tmp_path, argv, needle):
    out = tmp_path / "out"
    before = make_previous_outputs(out)
    assert_one_line_error(*run([a.replace("{out}", str(out)) for a in argv]), needle)
    assert snapshot(out) == before


def test_an_unknown_command_lists_the_known_ones(tmp_path):
    err = assert_one_line_error(*run(["statu", "--output-dir", tmp_path]), "unknown command 'statu'")
    assert "generate, traces, cases, realism, evaluate, status, restore" in err
    assert list(tmp_path.iterdir()) == []


def test_version_is_the_installed_packages():
    from importlib.metadata import version

    code, out, err = run(["--version"])
    assert (code, err) == (0, "") and out == f"simulator {version('monitoring-datafactory')}\n"


def test_top_level_help_shows_the_generate_options_first():
    code, out, _ = run(["--help"])
    assert code == 0
    assert "--samples N" in out.splitlines()[0]  # in the usage line
    assert out.index("--samples N") < out.index("traces")
    assert re.search(r"^  --samples N +number of samples \(default 20000\)", out, re.M)


def test_the_summary_goes_to_stdout(tmp_path):
    code, out, err = run(["--samples", "300", "--output-dir", tmp_path])
    assert code == 0 and err == ""  # no progress bar: stderr is no terminal here
    assert out.startswith(f"wrote {tmp_path / DATASET}: 300 samples") and out.count("\n") == 1


@pytest.mark.parametrize("argv", [["status", "--output-dir", "{tmp}"], ["--help"], ["--version"]],
                         ids=["status", "help", "version"])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path, argv):
    """`python -m simulator status | head -1`: no 'Broken pipe' error; exit 141 (SIGPIPE's) or 0."""
    (tmp_path / DATASET).write_bytes(b'{"metadata": {"total_samples": 0}, "training_samples": []}')
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "simulator", *[a.replace("{tmp}", str(tmp_path)) for a in argv]],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == (141 if argv[0] == "status" else 0)


def test_iter_traces_is_public():
    from simulator.api import iter_traces

    assert "iter_traces" in simulator.__all__ and simulator.iter_traces is iter_traces
    blocks = list(simulator.iter_traces(3, 20, seed=1))
    assert sum(len(df) for df, _ in blocks) == 60


def test_the_sample_jobs_imports_keep_unused_modules_out_and_put_everything_back(monkeypatch):
    """Run as a program, `_importing` makes an import of UNUSED_IMPORTS fail while the job's imports
    run (numba then takes BLAS as absent), with the collector off; afterwards the module imports as
    usual and the collector is on again."""
    import gc
    import importlib

    import simulator.__main__ as program

    monkeypatch.setattr(program, "_PROGRAM", True)
    for name in program.UNUSED_IMPORTS:
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        with program._importing():
            assert not gc.isenabled()
            for name in program.UNUSED_IMPORTS:
                with pytest.raises(ImportError):
                    importlib.import_module(name)
        assert gc.isenabled()
        for name in program.UNUSED_IMPORTS:
            assert importlib.import_module(name) is sys.modules[name] is not None
    finally:
        gc.unfreeze()
