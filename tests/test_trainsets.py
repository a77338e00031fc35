"""The training folder: splits by host, Parquet/JSONL/chat files, the dataset card `datasets` reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

import simulator
from simulator import trainsets
from simulator.__main__ import main
from simulator.catalogue import METRICS
from simulator.export import write_metrics_dataset
from simulator.trainsets import SPLITS, write_training_folder

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 500  # 10 hosts: 8 / 1 / 1 at the default shares
SEED = 3


def _export(out: Path, result, formats=("parquet", "jsonl"), shares=trainsets.DEFAULT_SHARES) -> Path:
    write_metrics_dataset(out / "metrics_dataset.json", result.metadata, result.samples)
    folder = write_training_folder(out, result.samples, result.metadata, result.config, formats=formats, shares=shares)
    return folder.path


@pytest.fixture(scope="module")
def result():
    return simulator.generate_samples(SAMPLES, seed=SEED)


@pytest.fixture(scope="module")
def folder(result, tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("trainset"), result)


def _files(folder: Path, pattern: str) -> dict[str, list[Path]]:
    return {s: sorted(folder.glob(pattern.format(split=s))) for s in SPLITS}


def _parquet(folder: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for paths in _files(folder, "data/{split}-*.parquet").values()
                      for p in paths])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _card(path: Path) -> dict:
    head, sep, _ = path.read_text().removeprefix("---\n").partition("\n---\n")
    assert sep, "the card starts with a YAML header between --- lines"
    return yaml.safe_load(head)


def test_no_host_in_two_splits(folder, result):
    rows = _parquet(folder)
    per_host = rows.group_by("host").agg(pl.col("split").n_unique())
    assert per_host["split"].max() == 1
    for split, paths in _files(folder, "data/{split}-*.parquet").items():
        assert {s for p in paths for s in pl.read_parquet(p)["split"].unique()} <= {split}
    manifest = json.loads((folder / "manifest.json").read_bytes())
    hosts = [set(manifest["split_hosts"][s]) for s in SPLITS]
    assert all(hosts) and not (hosts[0] & hosts[1] or hosts[0] & hosts[2] or hosts[1] & hosts[2])
    assert set().union(*hosts) == set(result.samples["host"].to_list())
    split_of = {h: s for s in SPLITS for h in manifest["split_hosts"][s]}
    assert all(split_of[h] == s for h, s in rows.select("host", "split").iter_rows())


def test_split_sizes_in_metadata_equal_the_files(folder):
    manifest = json.loads((folder / "manifest.json").read_bytes())
    examples = {s["name"]: s["num_examples"] for s in _card(folder / "README.md")["dataset_info"][0]["splits"]}
    chat_examples = {s["name"]: s["num_examples"]
                     for s in _card(folder / "chat" / "README.md")["dataset_info"][0]["splits"]}
    total = 0
    for split in SPLITS:
        parquet = sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob(f"data/{split}-*.parquet"))
        lines = [len(p.read_bytes().splitlines()) for p in folder.glob(f"data/{split}-*.jsonl")]
        chat = sum(len(p.read_bytes().splitlines()) for p in folder.glob(f"chat/{split}-*.jsonl"))
        size = manifest["splits"][split]
        assert parquet == sum(lines) == chat == size["samples"] == examples[split] == chat_examples[split] > 0
        assert size["normal"] + size["anomaly"] == size["samples"]
        assert size["hosts"] == len(manifest["split_hosts"][split])
        total += parquet
    assert total == manifest["total_samples"] == SAMPLES
    for name, record in manifest["files"].items():
        assert (folder / name).stat().st_size == record["bytes"]


def test_parquet_and_jsonl_carry_the_json_rows(folder, result):
    data = json.loads((folder.parent / "metrics_dataset.json").read_bytes())["training_samples"]
    reference = pl.DataFrame([{**{k: v for k, v in s.items() if k != "metrics"}, **s["metrics"]} for s in data])
    parquet = _parquet(folder)
    jsonl = pl.DataFrame([r for paths in _files(folder, "data/{split}-*.jsonl").values()
                          for p in paths for r in _jsonl(p)])
    for frame in (parquet, jsonl):
        assert sorted(frame["id"]) == sorted(reference["id"]) and frame["id"].n_unique() == SAMPLES
        joined = reference.join(frame, on="id", suffix="_out")
        assert len(joined) == SAMPLES
        for m in METRICS:  # the JSON holds float32 values in their shortest form
            assert np.array_equal(joined[m].cast(pl.Float32).to_numpy(), joined[f"{m}_out"].cast(pl.Float32).to_numpy())
        for key in ("status", "anomaly_type", "explanation", "session_id", "batch_id"):
            assert joined[key].equals(joined[f"{key}_out"], null_equal=True), key
    assert parquet.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert parquet.schema["host"] == pl.Int32
    stamps = reference.join(parquet.select("id", pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ")), on="id")
    assert stamps["timestamp"].equals(stamps["timestamp_right"])
    stamps = reference.join(jsonl.select("id", "timestamp"), on="id")
    assert stamps["timestamp"].equals(stamps["timestamp_right"])
    hosts = result.samples.select("id", "host").join(parquet.select("id", "host"), on="id")
    assert (hosts["host"] == hosts["host_right"]).all()
    # within a split, the samples keep the JSON dataset's order
    order = {i: n for n, i in enumerate(reference["id"])}
    for split in SPLITS:
        ids = parquet.filter(pl.col("split") == split)["id"].to_list()
        assert [order[i] for i in ids] == sorted(order[i] for i in ids)


def test_chat_jsonl_has_three_messages_per_sample(folder):
    rows = {r["id"]: r for r in _parquet(folder).to_dicts()}
    n = 0
    for split, paths in _files(folder, "chat/{split}-*.jsonl").items():
        for line in (r for p in paths for r in _jsonl(p)):
            n += 1
            roles = [m["role"] for m in line["messages"]]
            assert roles == ["system", "user", "assistant"] and line["split"] == split
            row = rows[line["id"]]
            user, answer = line["messages"][1]["content"], line["messages"][2]["content"]
            assert f"spectrum_active_jobs: {row['spectrum_active_jobs']} jobs" in user
            for m in ("cpu_usage", "vemkd_process_count"):  # the readings the explanation is computed from
                readings = ", ".join("-" if v is None else str(v if isinstance(v, int) else np.float32(v))
                                     for v in row[f"ctx_{m}"])
                assert f"\n{m}: {readings}\n" in user and len(row[f"hist_{m}"]) == 24
            verdict = "Status: normal." if row["anomaly_type"] is None else f"Status: anomaly ({row['anomaly_type']})."
            assert answer == f"{verdict}\n{row['explanation']}"
    assert n == SAMPLES


def _offline_datasets(monkeypatch, tmp_path):
    """The `datasets` package, offline (set before its first import, and again after) and caching in tmp."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setattr(datasets.config, name, True, raising=False)
    return datasets


def test_load_dataset_reads_the_folder_and_its_splits(folder, tmp_path, monkeypatch):
    datasets = _offline_datasets(monkeypatch, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_bytes())
    ds = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert {s: len(ds[s]) for s in ds} == {s: manifest["splits"][s]["samples"] for s in SPLITS}
    assert ds["train"].features["host"].dtype == "int32"
    assert ds["test"].features["cpu_usage"].dtype == "float32"
    assert set(ds["validation"]["split"]) == {"validation"}
    chat = datasets.load_dataset(str(folder / "chat"), cache_dir=str(tmp_path / "cache"))
    assert {s: len(chat[s]) for s in chat} == {s: manifest["splits"][s]["samples"] for s in SPLITS}
    assert [m["role"] for m in chat["test"][0]["messages"]] == ["system", "user", "assistant"]


def test_jsonl_only_folder_in_several_files_loads_as_json(result, tmp_path, monkeypatch):
    datasets = _offline_datasets(monkeypatch, tmp_path)
    monkeypatch.setattr(trainsets, "SHARD_ROWS", 100)
    folder = write_training_folder(tmp_path, result.samples, result.metadata, result.config, formats=("jsonl",),
                                   shares=(0.5, 0.5, 0)).path
    assert not list(folder.glob("data/*.parquet"))
    assert len(list(folder.glob("data/train-*.jsonl"))) > 1 and (folder / "data" / "train-00001.jsonl").exists()
    ds = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert sorted(ds) == ["train", "validation"]  # a share of 0: no test split, no file
    assert len(ds["train"]) + len(ds["validation"]) == SAMPLES
    assert isinstance(ds["train"][0]["timestamp"], str)


def _folder_bytes(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_clock(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")  # another generated_at than the fixture's run
    again = simulator.generate_samples(SAMPLES, seed=SEED)
    assert _folder_bytes(_export(tmp_path, again)) == _folder_bytes(folder)
    other = simulator.generate_samples(SAMPLES, seed=SEED + 1)
    assert _folder_bytes(_export(tmp_path / "other", other)) != _folder_bytes(folder)


def test_same_bytes_from_int32_hosts_and_datetime_timestamps(folder, result, tmp_path):
    """The staging types (host int32, timestamp a UTC datetime) give the same folder as int64 and text."""
    samples = result.samples.with_columns(
        pl.col("host").cast(pl.Int32),
        pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="ms", time_zone="UTC"))
    written = write_training_folder(tmp_path, samples, result.metadata, result.config, formats=("parquet", "jsonl")).path
    assert _folder_bytes(written) == _folder_bytes(folder)


def test_split_counts_and_host_assignment():
    assert trainsets.split_counts(10, (0.8, 0.1, 0.1)).tolist() == [8, 1, 1]
    assert trainsets.split_counts(3, (0.8, 0.1, 0.1)).tolist() == [1, 1, 1]  # every split gets a host
    assert trainsets.split_counts(2, (0.8, 0.1, 0.1)).sum() == 2
    assert trainsets.split_counts(7, (1.0, 0.0, 0.0)).tolist() == [7, 0, 0]
    hosts = np.arange(60)
    a = trainsets.host_splits(hosts, trainsets.DEFAULT_SHARES, 1)
    assert a.equals(trainsets.host_splits(hosts[::-1], trainsets.DEFAULT_SHARES, 1))  # order-independent
    assert not a.equals(trainsets.host_splits(hosts, trainsets.DEFAULT_SHARES, 2))
    assert a.group_by("split").len().sort("split").rows() == [("test", 6), ("train", 48), ("validation", 6)]


def test_options_are_checked():
    assert trainsets.parse_formats(None) == ("json",)
    assert trainsets.parse_formats(["jsonl,JSON", "parquet"]) == ("json", "parquet", "jsonl")
    assert trainsets.parse_shares("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in (["csv"], ["parquet,xml"], [","]):
        with pytest.raises(simulator.SimulatorError, match="^--format: "):
            trainsets.parse_formats(bad)
    for bad in ("80/20", "0/50/50", "80/-10/30", "a/b/c", "nan/1/1"):
        with pytest.raises(simulator.SimulatorError, match="^--splits: "):
            trainsets.parse_shares(bad)


def test_card_quotes_the_reports(result, tmp_path):
    (tmp_path / "realism").mkdir()
    out_of_range = {"metric": "cpu_usage", "hosts": "idle", "statistic": "skew", "within": False}
    (tmp_path / "realism" / "realism_report.json").write_text(json.dumps({
        "seed": 9, "hosts": 60, "passed": False, "checks": [{"within": True}, out_of_range],
        "anomaly_shapes": [{"within": True}], "discriminative": {"score": 0.625}}))
    (tmp_path / "learnability_report.json").write_text(json.dumps({"macro_f1": 0.8125, "model": "tree",
                                                                   "per_kind": {"cpu_spike": 0.9}}))
    card = (write_training_folder(tmp_path, result.samples, result.metadata, result.config, formats=("parquet",)).path
            / "README.md").read_text()
    assert "outside: cpu_usage (idle) skew." in card
    assert "1 of 2 statistics" in card and "1 of 1 anomaly-shape" in card and "0.625" in card
    assert "- macro_f1: 0.8125" in card and "- model: tree" in card and "per_kind" not in card
    assert f"seed `{SEED}`" in card and result.metadata["config_hash"] in card


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SOURCE_DATE_EPOCH": "1767571200"}


def _cli(out: Path, seed: int, *extra: str) -> int:
    """`python -m simulator` in this process (quiet); its exit status."""
    try:
        return main(["--samples", "300", "--seed", str(seed), "--quiet", "--output-dir", str(out), *extra])
    except SystemExit as exc:
        return exc.code


def test_cli_formats_and_a_crash_during_the_swap(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", ENV["SOURCE_DATE_EPOCH"])
    out = tmp_path / "out"
    assert _cli(tmp_path / "plain", 1) == 0
    assert main(["--samples", "300", "--seed", "1", "--output-dir", str(tmp_path / "summary")]) == 0
    assert "metrics_dataset/" not in capsys.readouterr().out  # json alone: no folder, none announced
    assert _cli(out, 1, "--format", "json,parquet", "--format", "jsonl") == 0
    # the JSON dataset is the same file with or without the other formats
    assert (out / "metrics_dataset.json").read_bytes() == (tmp_path / "plain" / "metrics_dataset.json").read_bytes()
    first = _folder_bytes(out / "metrics_dataset")
    assert any(p.suffix == ".parquet" for p in first) and any(p.suffix == ".jsonl" for p in first)
    # killed between moving the old folder aside and moving the new one in
    killed = subprocess.run([sys.executable, "-m", "simulator", "--samples", "300", "--seed", "2", "--quiet",
                             "--output-dir", str(out), "--format", "parquet"],
                            env=ENV | {"DATASAFE_KILL_AT": "metrics_dataset:retired"}, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert not (out / "metrics_dataset").exists() and (out / "metrics_dataset.old").is_dir()
    assert trainsets.recover_training_folder(out)
    assert _folder_bytes(out / "metrics_dataset") == first
    # --format parquet alone: the folder is replaced, the JSON dataset left as it was
    json_before = (out / "metrics_dataset.json").read_bytes()
    capsys.readouterr()
    assert main(["--samples", "300", "--seed", "2", "--output-dir", str(out), "--format", "parquet"]) == 0
    summary = capsys.readouterr().out
    assert f"wrote {out / 'metrics_dataset'}/: 300 samples" in summary and "metrics_dataset.json" not in summary
    assert (out / "metrics_dataset.json").read_bytes() == json_before
    assert not list((out / "metrics_dataset").glob("data/*.jsonl"))
    assert sorted(p.name for p in out.iterdir()) == ["metrics_dataset", "metrics_dataset.json", "staging"]
    capsys.readouterr()
    before = _folder_bytes(out)
    assert _cli(out, 2, "--format", "csv") == 2
    assert _folder_bytes(out) == before
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format: unknown format 'csv'" in err


def test_a_linked_folder_is_refused_before_anything_is_written(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics_dataset").symlink_to(elsewhere)
    assert _cli(out, 1, "--format", "parquet") == 2
    assert "metrics_dataset is a symbolic link" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["metrics_dataset"]
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]


def test_a_run_with_logs_shows_its_excerpt_in_the_chat_and_names_its_fields_in_the_card(tmp_path):
    """The chat's user message holds the sample's log excerpt (the lines the JSON sample carries, in
    order); the card lists the evidence and log columns the data files have."""
    result = simulator.generate_samples(200, seed=3, logs=True, staging_dir=tmp_path / "staging")
    folder = _export(tmp_path, result, formats=("parquet",))
    rows = {r["id"]: r for r in _parquet(folder).to_dicts()}
    chats = [r for paths in _files(folder, "chat/{split}-*.jsonl").values() for p in paths for r in _jsonl(p)]
    assert len(chats) == 200
    for chat in chats:
        row, user = rows[chat["id"]], chat["messages"][1]["content"]
        excerpt = "\n".join(f"{x['time']} {x['source']} {x['severity']}: {x['message']}" for x in row["log_lines"])
        assert f"Log lines of the same window ({len(row['log_lines'])} of {row['log_total']}):\n{excerpt}" in user
    card = (folder / "README.md").read_text()
    for column in ("`ctx_*`", "`hist_*`", "`minutes_since_onset`", "`log_total`", "`log_lines`"):
        assert f"| {column} |" in card, column
