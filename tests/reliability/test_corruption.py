"""Damaged datasets and staging are detected by `status` and restored by one command."""

from __future__ import annotations

import json
import os

import pytest

from simulator.__main__ import main as simulator_main

SEED_ENV = {"SOURCE_DATE_EPOCH": "1767571200"}


@pytest.fixture
def out(tmp_path, monkeypatch):
    for k, v in SEED_ENV.items():
        monkeypatch.setenv(k, v)
    d = tmp_path / "training"
    assert simulator_main(["--samples", "1500", "--output-dir", str(d), "--quiet", "--seed", "1"]) == 0
    assert simulator_main(["--samples", "1500", "--output-dir", str(d), "--quiet", "--seed", "2"]) == 0
    return d


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _flip(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    lambda p: _truncate(p, 1000),
    lambda p: _truncate(p, 0),
    lambda p: p.write_text(json.dumps({"metadata": {"total_samples": 5}, "training_samples": []})),
    lambda p: _flip(p, 10),
])
def test_a_damaged_dataset_is_reported_and_restored_from_the_newest_intact_backup(out, capsys, damage):
    target = out / "metrics_dataset.json"
    backup_before = sorted(out.glob("metrics_dataset.*.bak.json"))[-1].read_bytes()
    damage(target)
    assert simulator_main(["status", "--output-dir", str(out)]) == 1
    assert "DAMAGED" in capsys.readouterr().out
    assert simulator_main(["restore", "--output-dir", str(out)]) == 0
    assert "now comes from another run than staging/" in capsys.readouterr().out
    assert target.read_bytes() == backup_before
    assert len(list(out.glob("metrics_dataset.*.damaged.json"))) == 1
    # the dataset is whole again, but it is the seed-1 run's and the staging the seed-2 run's: status says so
    assert simulator_main(["status", "--output-dir", str(out)]) == 1
    text = capsys.readouterr().out
    assert "DAMAGED" not in text and "1500 samples, intact" in text
    assert "come from different runs" in text and "seed 1 vs 2" in text


def test_a_backup_of_the_same_run_matches_the_staging_again(tmp_path, capsys, monkeypatch):
    for k, v in SEED_ENV.items():
        monkeypatch.setenv(k, v)
    d = tmp_path / "training"
    for _ in range(2):  # the same run twice: the backup is of the run the staging holds
        assert simulator_main(["--samples", "300", "--output-dir", str(d), "--quiet", "--seed", "3"]) == 0
    _truncate(d / "metrics_dataset.json", 10)
    assert simulator_main(["restore", "--output-dir", str(d)]) == 0
    assert "another run" not in capsys.readouterr().out
    assert simulator_main(["status", "--output-dir", str(d)]) == 0
    assert "come from the same run" in capsys.readouterr().out


def test_without_an_intact_backup_restore_says_so(out, capsys):
    for b in out.glob("metrics_dataset.*.bak.json"):
        _truncate(b, 10)
    _truncate(out / "metrics_dataset.json", 10)
    assert simulator_main(["restore", "--output-dir", str(out)]) == 2
    assert "no intact backup" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["traces/traces-00000.parquet", "labels/labels-00000.parquet",
                                  "samples/samples-00000.parquet"])
def test_a_damaged_staging_file_is_detected(out, capsys, name):
    path = out / "staging" / name
    _flip(path, os.path.getsize(path) // 2)
    assert simulator_main(["status", "--output-dir", str(out)]) == 1
    text = capsys.readouterr().out
    assert "DAMAGED" in text and name in text


def test_a_swap_interrupted_between_renames_is_completed(out):
    (out / "staging").rename(out / "staging.old")
    assert simulator_main(["status", "--output-dir", str(out)]) == 0
    assert (out / "staging" / "manifest.json").exists()
