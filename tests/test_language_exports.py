"""Exports never lose accepted work; the command line takes exact options and fails or stops cleanly.

The runs talk to a real OpenAI-wire server on 127.0.0.1 (tests/loopback.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from datasafe import atomic_write_bytes, backup_file, list_backups
from language.__main__ import main

from conftest import ROOT
from loopback import LoopbackServer

TYPES = ("conversation", "technical_explanation", "english_pattern")


@pytest.fixture
def config_dir(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    models = yaml.safe_load((d / "models.yaml").read_text())
    models["requests"].update(timeout_s=1.5, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=4)
    (d / "models.yaml").write_text(yaml.safe_dump(models))
    return d


def _run(tmp_path, config_dir, *argv):
    return main([*argv, "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet"])


def _exported(tmp_path) -> list[dict]:
    return json.loads((tmp_path / "out" / "language_dataset.json").read_text())["samples"]


@pytest.fixture
def three_runs(tmp_path, config_dir):
    """Three generate runs of different types into one staging, as a user adds work over days."""
    with LoopbackServer(models=("alpha", "beta")) as server:
        for t in TYPES:
            assert _run(tmp_path, config_dir, "generate", "--endpoint", f"openai={server.url}",
                        "--models", "alpha,beta", "--types", t, "--count", "2") == 0
    return tmp_path


def test_export_holds_the_accepted_samples_of_every_run(three_runs, config_dir):
    after_generate = _exported(three_runs)
    assert sorted({s["type"] for s in after_generate}) == sorted(TYPES)  # the last run's export holds all
    assert len(after_generate) == 12                                     # 3 types x 2 prompts x 2 models
    assert _run(three_runs, config_dir, "export") == 0
    exported = _exported(three_runs)
    assert len(exported) == 12 and {s["type"] for s in exported} == set(TYPES)
    chat = (three_runs / "out" / "language_dataset.chat.jsonl").read_text().splitlines()
    assert len(chat) == 12


def test_an_export_that_would_shrink_the_dataset_stops_unless_allowed(three_runs, config_dir, capsys):
    target = three_runs / "out" / "language_dataset.json"
    before = target.read_bytes()
    backups = list_backups(target)
    capsys.readouterr()
    assert _run(three_runs, config_dir, "export", "--only-types", "conversation") == 2
    err = capsys.readouterr().err
    assert "holds 12 samples and this export would hold 4" in err and err.count("\n") == 1
    assert target.read_bytes() == before and list_backups(target) == backups

    assert _run(three_runs, config_dir, "export", "--only-types", "conversation", "--allow-fewer") == 0
    assert {s["type"] for s in _exported(three_runs)} == {"conversation"}
    assert json.loads(list_backups(target)[-1].read_text())["metadata"]["total_samples"] == 12


def test_only_last_run_selects_the_last_generate(three_runs, config_dir):
    assert _run(three_runs, config_dir, "export", "--only-last-run", "--allow-fewer") == 0
    assert {s["type"] for s in _exported(three_runs)} == {TYPES[-1]}


def test_an_abbreviated_option_is_an_error_that_changes_nothing(three_runs, config_dir, capsys):
    target = three_runs / "out" / "language_dataset.json"
    before = target.read_bytes()
    with pytest.raises(SystemExit) as exc:
        _run(three_runs, config_dir, "generate", "--type", "conversation", "--count", "1")
    assert exc.value.code == 2
    assert "unrecognized arguments: --type" in capsys.readouterr().err
    assert target.read_bytes() == before


def test_an_unknown_command_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["exprot"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert all(c in err for c in ("generate", "status", "export", "retry-failed", "restore", "reset"))


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    from importlib.metadata import version
    assert capsys.readouterr().out.strip().endswith(version("monitoring-datafactory"))


def test_a_closed_pipe_ends_status_quietly(tmp_path):
    """`python -m language status | head -0`: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "language", "status", "--output-dir", str(tmp_path)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_the_summary_goes_to_stdout(tmp_path, config_dir, capsys):
    with LoopbackServer(models=("alpha",)) as server:
        assert main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                     "--endpoint", f"openai={server.url}", "--models", "alpha", "--types", "conversation",
                     "--count", "1"]) == 0
    out = capsys.readouterr().out
    assert "accepted 1, rejected 0, failed 0" in out and "language_dataset.json (1 samples)" in out


# ---------------------------------------------------------------------------- backups
# A backup is a hard link to the file it keeps: the versions are written as every writer here writes
# a dataset, a new file renamed over the old (`atomic_write_bytes`), never into the old file.
def _stamp(i: int):
    from datetime import datetime, timedelta, timezone
    return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i)


def test_empty_or_repeated_versions_never_push_real_backups_out(tmp_path):
    target = tmp_path / "data.json"
    for i in range(3):
        atomic_write_bytes(target, f"version {i}".encode())
        backup_file(target, now=_stamp(i))
    real = list_backups(target)
    assert [p.read_text() for p in real] == ["version 0", "version 1", "version 2"]
    atomic_write_bytes(target, b"")
    for i in range(3, 6):
        assert backup_file(target, now=_stamp(i)) is None          # an empty file is not a version
    atomic_write_bytes(target, b"version 2")
    for i in range(6, 9):
        assert backup_file(target, now=_stamp(i)) == real[-1]      # the same bytes are kept once
    assert list_backups(target) == real


def test_an_empty_backup_left_by_an_older_version_goes_first(tmp_path):
    target = tmp_path / "data.json"
    atomic_write_bytes(target, b"version 0")
    backup_file(target, now=_stamp(0))
    empty = target.with_name("data.20260101T000001000000Z.bak.json")
    empty.write_bytes(b"")
    for i in (2, 3):
        atomic_write_bytes(target, f"version {i}".encode())
        backup_file(target, now=_stamp(i))
    assert [p.read_text() for p in list_backups(target)] == ["version 0", "version 2", "version 3"]
