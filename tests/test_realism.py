"""Normal behaviour of simulated CPU against real single hosts (NAB AWS CloudWatch, 5-minute averages).

Real ranges are computed here from ../shared/reference with its signature.py, not copied.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import simulator
from simulator.population import build_population

from conftest import REFERENCE

STATS = ("acf1", "acf12", "diffstd_over_std", "daily_profile_r2", "kurt_diff", "skew",
         "frac_zero_diff", "spec_slope")
STEPS = 4032  # 14 days at 5 minutes, as the NAB files
HOSTS = 40

pytestmark = pytest.mark.skipif(not (REFERENCE / "signature.py").exists(),
                                reason=f"reference data not found at {REFERENCE}")


@pytest.fixture(scope="module")
def signature():
    spec = importlib.util.spec_from_file_location("signature", REFERENCE / "signature.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sig(signature, values, t, windows=()):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return signature.signature("trace", t, values, list(windows), [], dt=300.0)


@pytest.fixture(scope="module")
def real_active_ranges(signature):
    """[min, max] of each statistic over the active real CPU hosts (median level above 1 %)."""
    with open(REFERENCE / "nab" / "labels" / "combined_windows.json") as f:
        windows = {Path(k).name: v for k, v in json.load(f).items()}
    rows = []
    for path in sorted((REFERENCE / "nab" / "data" / "realAWSCloudwatch").glob("*cpu_utilization*.csv")):
        t, v, _, _ = signature.load_csv(str(path))
        wins = [(signature._parse_time(a), signature._parse_time(b)) for a, b in windows.get(path.name, [])]
        s = _sig(signature, v, t, wins)
        if s["p50"] > 1.0:
            rows.append(s)
    assert len(rows) >= 6
    return {k: (min(r[k] for r in rows), max(r[k] for r in rows)) for k in STATS}


@pytest.fixture(scope="module")
def simulated(signature, config):
    traces, _ = simulator.simulate(HOSTS, STEPS, config=config, seed=2024, anomalies=0)
    profiles = np.array(build_population(config, HOSTS, 2024).profile_names)[
        build_population(config, HOSTS, 2024).profile]
    t = config.simulation.start_epoch_s + np.arange(STEPS) * 300.0
    cpu = traces["cpu_usage"].to_numpy().reshape(HOSTS, STEPS).astype(np.float64)
    return pl.DataFrame([{"profile": profiles[h], **{k: _sig(signature, cpu[h], t)[k] for k in STATS}}
                         for h in range(HOSTS)])


@pytest.mark.parametrize("stat", STATS)
def test_active_profiles_fall_inside_the_real_range(simulated, real_active_ranges, stat):
    lo, hi = real_active_ranges[stat]
    medians = simulated.filter(pl.col("profile") != "idle").group_by("profile").agg(pl.col(stat).median())
    for profile, value in medians.iter_rows():
        assert lo <= value <= hi, f"{profile} {stat} median {value:.3g} outside real [{lo:.3g}, {hi:.3g}]"


def test_no_daily_sine_heavy_tails_and_repeats_like_real_hosts(simulated):
    active = simulated.filter(pl.col("profile") != "idle")
    assert active["daily_profile_r2"].median() < 0.07       # a daily sine gives about 0.7
    assert active["kurt_diff"].median() > 2.0                # Gaussian noise gives 0
    assert 0.001 <= active["frac_zero_diff"].median() <= 0.04
    assert active["skew"].median() > 0.5


def test_idle_hosts_look_idle(simulated):
    idle = simulated.filter(pl.col("profile") == "idle")
    assert len(idle) >= 3
    assert abs(idle["acf1"].median()) < 0.15                 # real idle: about 0
    assert 0.2 <= idle["frac_zero_diff"].median() <= 0.4    # real idle: 26-33 %
    assert idle["kurt_diff"].median() > 30                   # real idle: about 100
    assert idle["daily_profile_r2"].median() < 0.07
