"""The learnability report: host-split folds, causal context features, figures at a small size, transfer."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import polars as pl
import pytest

from simulator.__main__ import main
from simulator.catalogue import METRICS
from simulator.evaluate import (REPORT_NAME, EvalData, all_passed, classification_figures, context_features,
                                cpu_window_features, host_folds, carried_windows, simulate_dataset)

from conftest import REFERENCE

pytest.importorskip("sklearn", reason="the learnability report needs scikit-learn (the dev extra installs it)")

SMALL_SAMPLES = 1000  # 20 hosts: 4 per fold


def run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def small_data():
    return simulate_dataset(300, seed=5)


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    """One `python -m simulator evaluate` at a small size: (exit status, stdout, the JSON report, stderr)."""
    out = tmp_path_factory.mktemp("evaluate")
    code, stdout, err = run(["evaluate", "--samples", SMALL_SAMPLES, "--seed", 11, "--workers", 1,
                             "--output-dir", out])
    assert code == 0, err
    return code, stdout, json.loads((out / REPORT_NAME).read_text()), err


def test_the_command_tells_each_stage_as_it_starts(small_report):
    stages = [line for line in small_report[3].splitlines() if line.startswith("evaluate: ")]
    assert [s.split(" (")[0] for s in stages] == [
        f"evaluate: simulating {SMALL_SAMPLES:,} samples and their traces",
        "evaluate: features; the reference learner on 5 host folds, snapshot and context",
        "evaluate: onset and time-to-exhaustion regressors",
        "evaluate: transfer: a CPU detector fit on simulated normal hosts, scored on NAB's real files"]
    assert stages[-1].endswith(" s)") and "wrote " in small_report[3]


# ------------------------------------------------------------------------------------ the split

def test_host_folds_never_put_a_host_on_both_sides():
    rng = np.random.default_rng(0)
    host = rng.integers(0, 37, 2000)
    folds = host_folds(host, 5, seed=3)
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(host)))  # every sample tested exactly once
    for train, test in folds:
        assert len(test) and not set(host[train]) & set(host[test])
        assert len(train) + len(test) == len(host)


def test_host_folds_of_a_sample_set_split_its_hosts(small_data):
    host = small_data.samples["host"].to_numpy()
    for train, test in host_folds(host, 3, small_data.seed):
        assert not set(host[train]) & set(host[test])


# ---------------------------------------------------------------------------- context features

def test_context_features_read_the_samples_own_windows(small_data):
    s = small_data.samples
    fine, coarse = carried_windows(s)
    assert fine.shape == (len(s), len(METRICS), 12) and coarse.shape == (len(s), len(METRICS), 24)
    snapshot = np.stack([s[m].to_numpy() for m in METRICS], axis=1)
    np.testing.assert_array_equal(fine[:, :, -1], snapshot.astype(np.float32))
    for i, m in enumerate(METRICS):
        np.testing.assert_array_equal(fine[:, i], s[f"ctx_{m}"].to_numpy().astype(np.float64))
        np.testing.assert_array_equal(coarse[:, i], s[f"hist_{m}"].to_numpy().astype(np.float64))


def test_context_features_use_only_what_the_sample_carries(small_data):
    """Shuffling every column a sample does not carry as evidence (the trace without the anomaly,
    the event's steps, the targets) leaves the features as they were; changing one reading of a
    sample's context changes that sample's features only (so the comparison can fail)."""
    from simulator.context import _list_column

    s = small_data.samples
    before = context_features(small_data).X
    evidence = {*METRICS, "profile", "cores", *(f"{p}{m}" for p in ("ctx_", "hist_") for m in METRICS)}
    order = np.random.default_rng(1).permutation(len(s))
    scrambled = s.with_columns(s.select(pl.exclude(*evidence))[order])
    after = context_features(EvalData(scrambled, small_data.config, small_data.seed)).X
    np.testing.assert_array_equal(after, before)
    i = 7
    ctx = s["ctx_cpu_usage"].to_numpy().astype(np.float32)
    ctx[i, -2] = (0.0 if ctx[i, -2] > 50 else 100.0)
    changed = context_features(EvalData(s.with_columns(_list_column("ctx_cpu_usage", ctx, False)),
                                        small_data.config, small_data.seed)).X
    assert not np.array_equal(changed[i], before[i], equal_nan=True)
    rest = np.arange(len(s)) != i
    np.testing.assert_array_equal(changed[rest], before[rest])


def test_cpu_window_features_are_causal():
    x = np.random.default_rng(2).gamma(2.0, 5.0, 2000)
    base = cpu_window_features(x)
    assert np.isnan(base[:299]).all() and np.isfinite(base[299:]).all()
    t = 1200
    y = x.copy()
    y[t + 1:] = 100.0
    np.testing.assert_array_equal(cpu_window_features(y)[:t + 1], base[:t + 1])
    y[t] = 100.0
    assert not np.array_equal(cpu_window_features(y)[t], base[t])


# -------------------------------------------------------------------------------------- scores

def test_classification_figures_on_a_known_confusion():
    classes = ["normal", "a", "b"]
    y = np.array(["normal"] * 6 + ["a"] * 2 + ["b"] * 2)
    pred = np.array(["normal"] * 5 + ["a"] + ["a", "normal"] + ["a", "b"])
    f = classification_figures(y, pred, classes)
    assert f["confusion"] == [[5, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert f["per_kind"]["a"] == {"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2}
    assert f["macro_recall"] == 0.5 and f["min_kind_recall"] == 0.5
    assert f["anomaly_vs_normal"] == pytest.approx((3 / 4 + 5 / 6) / 2)


def test_strict_passes_only_when_every_target_and_the_transfer_pass():
    ok = {"passed": True}
    assert all_passed({"targets": [ok], "transfer": {"targets": [ok]}})
    assert not all_passed({"targets": [ok, {"passed": False}], "transfer": {"targets": [ok]}})
    assert not all_passed({"targets": [ok], "transfer": {"targets": [{"passed": False}]}})
    assert not all_passed({"targets": [ok], "transfer": None})  # not measured is not passed


# ------------------------------------------------------------------------- the report, end to end

@pytest.mark.slow
def test_report_has_its_figures_and_targets(small_report):
    code, stdout, report, _ = small_report
    assert code == 0  # targets failing at a small size do not fail the command without --strict
    for key in ("macro_recall_snapshot", "macro_recall_context", "anomaly_vs_normal_balanced_accuracy",
                "per_kind", "confusion", "transfer", "seed", "samples", "config_hash"):
        assert key in report
    assert report["samples"] == SMALL_SAMPLES and report["seed"] == 11
    classes = report["confusion"]["classes"]
    for name in ("snapshot", "context"):
        cm = np.array(report["confusion"][name])
        assert cm.shape == (len(classes), len(classes)) and cm.sum() == SMALL_SAMPLES
        for c in classes:
            fig = report["per_kind"][name][c]
            assert fig["support"] == cm[classes.index(c)].sum()
            assert fig["support"] == 0 or 0.0 <= fig["recall"] <= 1.0
    assert {r["name"] for r in report["targets"]} == {"macro_recall_context", "min_kind_recall_context",
                                                      "anomaly_vs_normal_context"}
    assert stdout.count("PASS") + stdout.count("FAIL") >= 3
    onset = report["onset_error"]
    assert onset["n"] == SMALL_SAMPLES - cm[classes.index("normal")].sum()  # every anomaly sample, once
    assert onset["mae_minutes"] < onset["baseline_mae_minutes"]  # the context shows how old an event is
    assert "onset error (context" in stdout


def test_regression_errors_are_out_of_fold_on_known_targets_only():
    pytest.importorskip("sklearn")
    from simulator.evaluate import Features, host_folds, regression_figures

    rng = np.random.default_rng(3)
    n = 600
    host = np.repeat(np.arange(60), 10)
    target = rng.uniform(0, 300, n)
    X = np.stack([target + rng.normal(0, 5, n), rng.normal(size=n)], axis=1)
    target[::4] = np.nan  # not every sample carries the target
    fig = regression_figures(Features(X, ["a", "b"], np.zeros(2, bool)), target, host_folds(host, 5, 0), 0)
    assert fig["n"] == np.isfinite(target).sum()
    assert fig["mae_minutes"] < 20 < fig["baseline_mae_minutes"]  # uniform on 0..300: baseline about 75


@pytest.mark.slow
def test_context_beats_the_snapshot(small_report):
    """A looser bar than the issue's targets (those are checked by the 20,000-sample benchmark)."""
    _, _, report, _ = small_report
    assert report["macro_recall_context"] >= report["macro_recall_snapshot"]
    assert report["macro_recall_context"] >= 0.7
    assert report["anomaly_vs_normal_balanced_accuracy"]["context"] >= 0.9


@pytest.mark.slow
def test_transfer_figures_on_the_real_nab_files(small_report):
    if not (REFERENCE / "nab").is_dir():
        pytest.skip(f"no reference data at {REFERENCE} (the NAB files are read from ../shared/reference)")
    t = small_report[2]["transfer"]
    assert t is not None and len(t["files"]) >= 10
    for fit in ("simulated_fit", "real_fit_leave_one_file_out"):
        f = t[fit]
        assert f["windows"] >= 16 and 0 <= f["windows_caught"] <= f["windows"]
        assert 0.0 < f["false_alarm_rate"] < 0.1  # a 1 % threshold: a few % on other hosts, not half
    assert [r["name"] for r in t["targets"]] == ["false_alarms", "recall"]


def test_an_explicit_reference_without_nab_is_a_one_line_error(tmp_path):
    code, out, err = run(["evaluate", "--samples", 100, "--reference", tmp_path, "--output-dir", tmp_path])
    assert code == 2 and "--reference" in err and err.count("\n") == 1
    assert not (tmp_path / REPORT_NAME).exists()


def test_shape_summary_dates_an_excursion_and_tells_a_drain_from_a_hold():
    """A level shift 4 points old is 4 points old; a spike past its peak is below it; a steady climb
    rises at every step; the last hours' change sees a rise the day's median hides."""
    from simulator.evaluate import shape_summary

    day = np.full(24, 10.0)
    day[-3:] = [12.0, 14.0, 16.0]
    hold = np.array([10.0] * 8 + [50.0] * 4)
    drain = np.array([10.0, 60.0] + [10.0] * 6 + [60.0, 60.0, 40.0, 30.0])  # an older burst does not count
    climb = np.linspace(10.0, 16.0, 12)
    fine = np.stack([hold, drain, climb])[:, None, :]
    coarse = np.stack([np.full(24, 10.0), np.full(24, 10.0), day])[:, None, :]
    f = shape_summary(fine[..., -1], fine, coarse)
    assert f["run_points"][:, 0].tolist() == [4.0, 4.0, 6.0]
    assert f["below_peak"][:, 0].tolist() == [0.0, 30.0, 0.0]
    assert f["rising_share"][2, 0] == 1.0 and f["rising_share"][0, 0] == 1 / 11
    assert f["change_3h"][2, 0] == 4.0 and f["run_hours"][2, 0] == 2.0  # 14 and 16 are past half of 16 - 10
