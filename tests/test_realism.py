"""Simulated normal behaviour and anomaly shapes against real single hosts (NAB, 5-minute averages).

Real ranges are computed at test time from ../shared/reference with its signature.py (not copied).
"""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from hypothesis import given, settings, strategies as st

from simulator.config import load_config
from simulator.realism.report import CHECKS, run_realism

from conftest import REFERENCE, ROOT

DEFAULT_HOSTS = 60  # what `python -m simulator realism` simulates by default

pytestmark = pytest.mark.skipif(not (REFERENCE / "signature.py").exists(),
                                reason=f"reference data not found at {REFERENCE}")


@pytest.fixture(scope="module")
def default_run(config):
    return run_realism(config, DEFAULT_HOSTS, config.simulation.seed, REFERENCE)


def _out_of_range(result) -> list:
    return (result.checks.filter(~pl.col("within"))
            .select("metric", "hosts", "statistic", "sim_median", "real_min", "real_max").rows()
            + result.shapes.filter(~pl.col("within")).select("statistic", "sim_median", "real_p10", "real_p90").rows())


def test_default_population_is_inside_every_real_range(default_run):
    assert len(default_run.checks) >= 25  # every check produced its statistics
    assert _out_of_range(default_run) == []


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"{c.metric}-{c.hosts}")
def test_each_check_has_real_and_simulated_hosts(default_run, check):
    rows = default_run.checks.filter((pl.col("metric") == check.metric) & (pl.col("hosts") == check.hosts))
    assert len(rows) == len(check.statistics)
    assert (rows["n_real"] >= 2).all() and (rows["n_sim"] >= 3).all()


def test_the_naive_signature_is_absent(default_run):
    """What a naive simulator (AR(1), daily sine, Gaussian noise) fails: all four hold here."""
    active = default_run.host_stats.filter((pl.col("metric") == "cpu_usage") & (pl.col("profile") != "idle"))
    assert active["daily_profile_r2"].median() < 0.07       # a daily sine gives about 0.7
    assert active["kurt_diff"].median() > 2.0                # Gaussian noise gives 0
    assert 0.001 <= active["frac_zero_diff"].median() <= 0.04
    assert active["skew"].median() > 0.5


def test_idle_hosts_look_idle(default_run):
    idle = default_run.host_stats.filter((pl.col("metric") == "cpu_usage") & (pl.col("profile") == "idle"))
    assert len(idle) >= 3
    assert abs(idle["acf1"].median()) < 0.15                 # real idle: about 0
    assert 0.2 <= idle["frac_zero_diff"].median() <= 0.4    # real idle: 26-33 %
    assert idle["kurt_diff"].median() > 30                   # real idle: about 100


def test_cpu_spikes_are_short_and_peak_like_nab(default_run):
    shapes = {r["statistic"]: r for r in default_run.shapes.iter_rows(named=True)}
    assert 1 <= shapes["length_points"]["sim_median"] <= 7
    assert shapes["length_points"]["sim_max"] <= 7
    assert shapes["peak_global_sigma"]["within"]


@settings(max_examples=4)
@given(seed=st.integers(0, 2**32 - 1))
def test_active_cpu_is_inside_the_real_range_for_any_seed(seed):
    result = run_realism(load_config(), DEFAULT_HOSTS, seed, REFERENCE, metrics=("cpu_usage",))
    active = result.checks.filter(pl.col("hosts") == "active")
    assert len(active) > 0
    assert active.filter(~pl.col("within")).rows() == []
    assert result.shapes["within"].all(), result.shapes.rows()


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "simulator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                                       "SIMULATOR_REFERENCE": str(REFERENCE)})


def test_realism_command_prints_the_table_writes_plots_and_passes_on_defaults(tmp_path):
    out = tmp_path / "realism"
    proc = _run("realism", "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "cpu_usage" in proc.stdout and "real range" in proc.stdout and " OUT" not in proc.stdout
    for name in ("profiles.png", "real_vs_simulated.png", "statistics.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    report = json.loads((out / "realism_report.json").read_text())
    assert report["passed"] is True and len(report["checks"]) >= 25


def test_realism_command_fails_when_a_statistic_is_out_of_range(tmp_path, config_dict, write_config):
    # a host population with no noise at all cannot look like real hosts
    for profile in config_dict["profiles"].values():
        profile.update(cpu_jump_prob=0, cpu_agent_spikes_per_day=0, cpu_cron_prob=0)
    config_dict["profile_defaults"].update(cpu_fast_sigma=0.001, cpu_jump_prob=0, cpu_cron_prob=0)
    proc = _run("realism", "--hosts", "20", "--no-plots", "--config", str(write_config(config_dict)),
                "--output-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert " OUT" in proc.stdout


def test_realism_command_names_a_missing_reference(tmp_path):
    proc = _run("realism", "--reference", str(tmp_path / "nowhere"), "--no-plots",
                "--output-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "signature.py not found" in proc.stderr
    assert "Traceback" not in proc.stderr
