"""Samples carry their evidence: the context and history a monitoring system has at that instant, the
host's facts, and targets that agree with the simulator's truth."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.api import generate_samples, simulate
from simulator.catalogue import METRICS
from simulator.export import training_frame, window_arrays, write_metrics_dataset
from simulator.jsonfmt import splice_windows, write_number

N_SAMPLES = 600


@pytest.fixture(scope="module")
def sampled(config):
    result = generate_samples(N_SAMPLES, seed=5, config=config)
    sim = config.simulation
    hosts = math.ceil(N_SAMPLES / sim.samples_per_host)
    steps = int(round(sim.trace_days * 86400 / sim.interval_s))
    traces, events = simulate(hosts, steps, seed=5, config=config,
                              anomalies=int(round(N_SAMPLES * sim.anomaly_ratio)))
    return result, traces.sort("host", "step"), events, steps


def _trace(traces: pl.DataFrame, steps: int, metric: str) -> np.ndarray:
    return traces[metric].to_numpy().astype(np.float64).reshape(-1, steps)


def test_the_context_is_the_trace_before_the_sample(sampled, config):
    result, traces, _, steps = sampled
    s = result.samples
    k = config.simulation.context_steps
    host, step = s["host"].to_numpy(), s["step"].to_numpy()
    for m in METRICS:
        trace = _trace(traces, steps, m)
        ctx = s[f"ctx_{m}"].to_numpy().astype(np.float64)
        idx = step[:, None] - np.arange(k - 1, -1, -1)[None, :]
        expected = np.where(idx >= 0, trace[host[:, None], np.clip(idx, 0, None)], np.nan)
        np.testing.assert_array_equal(ctx, expected, err_msg=m)
        np.testing.assert_array_equal(ctx[:, -1], s[m].to_numpy().astype(np.float64), err_msg=m)


def test_the_history_is_hourly_means_of_the_trace(sampled, config):
    result, traces, _, steps = sampled
    s = result.samples
    hours, per_hour = config.simulation.history_hours, int(3600 / config.simulation.interval_s)
    host, step = s["host"].to_numpy(), s["step"].to_numpy()
    for m in ("cpu_usage", "disk_usage", "spectrum_active_jobs"):
        trace = _trace(traces, steps, m)
        hist = s[f"hist_{m}"].to_numpy().astype(np.float64)
        for row in range(0, len(s), 37):
            for k in range(hours):
                last = step[row] - (hours - 1 - k) * per_hour
                window = trace[host[row], max(0, last - per_hour + 1):last + 1]
                if last < 0:
                    assert np.isnan(hist[row, k])
                else:
                    assert hist[row, k] == pytest.approx(window.mean(), abs=0.0051), (m, row, k)


def test_targets_agree_with_the_event_table(sampled, config):
    result, traces, events, steps = sampled
    interval_min = config.simulation.interval_s / 60
    s = result.samples.join(events.select("event_id", pl.col("start_step").alias("ev_start"),
                                          pl.col("end_step").alias("ev_end")), on="event_id", how="left")
    anomalies = s.filter(pl.col("kind").is_not_null())
    assert len(anomalies) == round(N_SAMPLES * config.simulation.anomaly_ratio)
    assert (anomalies["minutes_since_onset"] == (anomalies["step"] - anomalies["ev_start"]) * interval_min).all()
    assert (anomalies["minutes_until_end"] == (anomalies["ev_end"] - anomalies["step"]) * interval_min).all()
    assert (anomalies["minutes_since_onset"] >= 0).all() and (anomalies["minutes_until_end"] > 0).all()
    for a in config.anomalies:  # every kind's events outlast its sample_after_minutes in the shipped config
        assert (anomalies.filter(pl.col("kind") == a.kind)["minutes_since_onset"] >= a.sample_after_minutes).all()
    assert any(a.sample_after_minutes > 0 for a in config.anomalies)
    normal = s.filter(pl.col("kind").is_null())
    assert normal["minutes_since_onset"].null_count() == len(normal)
    flagged = anomalies.select([pl.col(f"anomalous_{m}") for m in METRICS]).to_numpy()
    assert flagged.any(axis=1).all()                     # an anomaly sample shows its event somewhere
    assert not normal.select([pl.col(f"anomalous_{m}") for m in METRICS]).to_numpy().any()


def test_time_to_exhaustion_is_when_the_trace_reaches_the_level(sampled, config):
    result, traces, _, steps = sampled
    s = result.samples.filter(pl.col("kind") == "disk_full")
    assert len(s) > 0
    disk = _trace(traces, steps, "disk_usage")
    reached = 0
    for row in s.iter_rows(named=True):
        ahead = disk[row["host"], row["step"]:row["end_step"]]
        hits = np.flatnonzero(ahead >= 99.9)
        if len(hits):
            reached += 1
            assert row["minutes_to_exhaustion"] == hits[0] * config.simulation.interval_s / 60
        else:
            assert row["minutes_to_exhaustion"] is None
        assert row["exhaustion_metric"] == "disk_usage"
    assert reached > 0
    other = result.samples.filter(~pl.col("kind").is_in(["disk_full", "memory_leak"]).fill_null(True))
    assert other["exhaustion_metric"].null_count() == len(other)


def test_the_json_sample_keeps_the_seed_keys_and_adds_the_evidence(sampled, tmp_path, config):
    result = sampled[0]
    path = tmp_path / "metrics_dataset.json"
    write_metrics_dataset(path, result.metadata, result.samples)
    data = json.loads(path.read_text())
    first = data["training_samples"][0]
    assert list(first)[:8] == ["id", "timestamp", "metrics", "status", "anomaly_type", "explanation",
                               "session_id", "batch_id"]
    assert set(first) - set(list(first)[:8]) == {"host", "targets", "context", "history"}
    assert data["metadata"]["evidence"]["context_steps"] == config.simulation.context_steps
    for sample, row in zip(data["training_samples"], result.samples.iter_rows(named=True)):
        assert sample["id"] == row["id"]
        assert sample["host"] == {"name": f"cn{row['host']:05d}", "profile": row["profile"], "cores": row["cores"]}
        for m in METRICS:
            assert len(sample["context"][m]) == config.simulation.context_steps
            assert np.float32(sample["context"][m][-1]) == np.float32(sample["metrics"][m])


# ---------------------------------------------------------------------------- the JSON kernel
@given(st.one_of(st.floats(min_value=1e-4, max_value=1e6).map(np.float32).map(float), st.just(0.0),
                 st.integers(0, 10**6).map(lambda k: k * 1e-4)))
def test_a_float_is_written_as_the_shortest_decimal_of_its_float32(v):
    buf = np.zeros(64, dtype=np.uint8)
    end = write_number(buf, 0, np.float32(v), False)
    text = buf[:end].tobytes().decode()
    assert np.float32(float(text)) == np.float32(v)
    shortest = np.format_float_positional(np.float32(v), unique=True, trim="0")
    assert len(text) == len(shortest)  # as short as numpy's shortest (a tie may round the other way)


def test_a_tiny_float_is_written_as_zero():
    buf = np.zeros(64, dtype=np.uint8)
    assert buf[:write_number(buf, 0, np.float32(1e-45), False)].tobytes() == b"0.0"


@given(st.integers(min_value=0, max_value=10**9))
def test_an_integer_metric_is_written_as_an_integer(n):
    buf = np.zeros(32, dtype=np.uint8)
    assert buf[:write_number(buf, 0, np.float32(n), True)].tobytes().decode() == str(int(np.float32(n)))


def test_spliced_rows_equal_a_plain_encoding():
    rng = np.random.default_rng(1)
    frame = pl.DataFrame({"id": ["a", "b\nc", 'q"x'], "v": [1.5, None, 3.0]})
    fine = np.round(rng.random((3, 2, 4)) * 100, 2).astype(np.float32)
    fine[0, 0, :2] = np.nan
    fine[:, 1] = np.round(fine[:, 1])  # an integer metric's values are whole
    coarse = rng.random((3, 2, 3)).astype(np.float32)
    buf = io.BytesIO()
    frame.write_ndjson(buf)
    out = b"[" + bytes(splice_windows(buf.getvalue(), fine, coarse, integer=np.array([False, True]),
                                      names=["x", "y"])) + b"]"
    rows = orjson.loads(out)

    def plain(a, integer):
        return [None if np.isnan(v) else (int(v) if integer else np.float32(v)) for v in a]

    for i, row in enumerate(rows):
        assert row["id"] == frame["id"][i] and row["v"] == frame["v"][i]
        assert [None if v is None else np.float32(v) for v in row["context"]["x"]] == plain(fine[i, 0], False)
        assert row["context"]["y"] == plain(fine[i, 1], True)
        assert [np.float32(v) for v in row["history"]["x"]] == list(coarse[i, 0])


def test_windows_are_read_back_from_the_frame(sampled):
    samples = sampled[0].samples
    arrays = window_arrays(samples)
    assert arrays.fine.shape == (len(samples), len(METRICS), 12)
    assert list(arrays.integer) == [samples[f"ctx_{m}"].dtype.inner.is_integer() for m in METRICS]
    assert "context" not in training_frame(samples).columns  # the kernel appends it


# ---------------------------------------------------------------------------- hard negatives
def test_hard_negatives_are_busy_healthy_moments_and_flagged(config):
    plain = generate_samples(N_SAMPLES, seed=5, config=config)
    hard = generate_samples(N_SAMPLES, seed=5, config=config, hard_negatives=0.5)
    flagged = hard.samples.filter(pl.col("hard_negative"))
    normal = plain.samples.filter(pl.col("kind").is_null())
    assert len(flagged) == pytest.approx(0.5 * len(normal), abs=2)  # rounded per block
    assert flagged["kind"].null_count() == len(flagged)               # only healthy moments
    assert not plain.samples["hard_negative"].any()
    assert hard.metadata["generation_stats"] == plain.metadata["generation_stats"]  # counts unchanged
    for m in ("cpu_usage", "load_average"):
        assert flagged[m].mean() > normal[m].mean(), m
    again = generate_samples(N_SAMPLES, seed=5, config=config, hard_negatives=0.5)
    assert again.samples["id", "hard_negative", "cpu_usage"].equals(hard.samples["id", "hard_negative", "cpu_usage"])


def test_sample_options_are_checked_before_anything_runs(config):
    from simulator.errors import SimulatorError
    with pytest.raises(SimulatorError, match="--hard-negatives: must be between 0 and 1"):
        generate_samples(10, config=config, hard_negatives=1.5)
    with pytest.raises(SimulatorError, match="--context-steps: must be at least 1"):
        generate_samples(10, config=config, context_steps=0)
    short = generate_samples(50, seed=5, config=config, context_steps=3)
    assert short.samples["ctx_cpu_usage"].dtype.size == 3


# ---------------------------------------------------------------------------- usual levels
def usual_levels(ctx: np.ndarray, hist: np.ndarray, min_hours: int) -> list[np.ndarray]:
    """(usual, spread, hours, readings, from_history) of one metric: `context.evidence_levels` over a
    metric axis of one (its off run set aside)."""
    from simulator.context import evidence_levels

    return [a[0] for a in evidence_levels(ctx[None], hist[None], ctx[None, :, -1], min_hours, 1.0, 3.0)[:5]]


def _usual_reference(ctx: np.ndarray, hist: np.ndarray, min_hours: int):
    """`usual_levels` in plain NumPy, one sample at a time."""
    rows = []
    for c, h in zip(ctx, hist):
        hours, readings = int(np.sum(~np.isnan(h))), int(np.sum(~np.isnan(c[:-1])))
        source = h if hours >= min_hours else c[:-1]
        values = source[~np.isnan(source)]
        diffs = np.abs(np.diff(c))
        diffs = diffs[~np.isnan(diffs)]
        noise = np.median(diffs) / np.sqrt(2.0) if len(diffs) else np.nan
        if len(values) == 0:
            rows.append((c[-1], 0.0, hours, readings, hours >= min_hours))
            continue
        level = np.median(values)
        mad = np.median(np.abs(values - level))
        rows.append((level, mad if np.isnan(noise) else max(mad, noise), hours, readings, hours >= min_hours))
    return [np.array(col) for col in zip(*rows)]


@pytest.mark.parametrize("n_hist", [0, 5, 23, 24])
def test_usual_levels_equal_a_plain_median_and_mad(n_hist):
    rng = np.random.default_rng(n_hist)
    n = 3000  # more than one chunk of the kernel
    ctx = np.round(rng.normal(50, 10, (n, 12)), 1)
    hist = np.round(rng.normal(50, 10, (n, n_hist)), 2)
    ctx[rng.random(ctx.shape) < 0.2] = np.nan
    hist[rng.random(hist.shape) < 0.3] = np.nan
    ctx[:50] = np.nan  # no data at all: usual is the snapshot (NaN), spread 0
    hist[:50] = np.nan
    hist[50:100] = 7.5  # a flat past: ties everywhere, spread from the readings' noise
    ctx[:, -1][100:200] = 60.0
    got = usual_levels(ctx, hist, 6)
    for name, a, b in zip(("usual", "spread", "hours", "readings", "from_history"), got,
                          _usual_reference(ctx, hist, 6)):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_evidence_features_from_the_windows_equal_those_from_the_columns(sampled, config):
    from simulator.explain import evidence_features

    samples = sampled[0].samples
    interval = config.simulation.interval_s
    from_columns = evidence_features(samples, interval)
    from_windows = evidence_features(samples, interval, window_arrays(samples))
    assert list(from_windows) == list(from_columns)
    for name, series in from_columns.items():
        assert series.equals(from_windows[name]), name


def _evidence_reference(samples, interval: float) -> dict[str, np.ndarray]:
    """usual_, usual_span_, off_run_ and spreads_off_ per metric, one metric at a time: `usual_levels`
    over float64 copies of the windows and the off run in NumPy (a cumulative product of the off
    readings from the snapshot back)."""
    from simulator.explain import MIN_HISTORY_HOURS, OFF_SPREADS, spreads_off

    windows = window_arrays(samples)
    minutes = interval / 60.0
    out = {}
    for i, m in enumerate(METRICS):
        ctx = windows.fine[:, i].astype(np.float64)
        usual, spread, hours, readings, from_history = usual_levels(
            ctx, windows.coarse[:, i, :-1].astype(np.float64), MIN_HISTORY_HOURS)
        now = samples[m].to_numpy().astype(np.float64)
        distance = np.abs(now - usual)
        off = np.abs(ctx - usual[:, None]) > 0.5 * distance[:, None]
        off &= (distance > np.maximum(OFF_SPREADS * spread, 0.0))[:, None] & (distance > 0)[:, None]
        trailing = np.cumprod(off[:, ::-1], axis=1).sum(axis=1)
        run = np.where(trailing == 0, -2.0, np.where(trailing == ctx.shape[1], -1.0, (trailing - 1) * minutes))
        out["usual_" + m] = usual
        out["usual_span_" + m] = np.where(from_history, hours, readings * minutes).astype(np.int64)
        out["off_run_" + m] = run
        out["spreads_off_" + m] = spreads_off(now, usual, spread)
    return out


def test_evidence_kernel_equals_the_per_metric_reference(sampled, config):
    """`evidence_levels` (every metric in one kernel, float32 windows) gives the features of the
    per-metric path, bit for bit."""
    from simulator.explain import evidence_features

    samples = sampled[0].samples
    interval = config.simulation.interval_s
    got = evidence_features(samples, interval)
    expected = _evidence_reference(samples, interval)
    assert (expected["off_run_cpu_usage"] >= 0).any() and (expected["off_run_cpu_usage"] == -1).any()
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name].to_numpy(), values, err_msg=name)


def test_sort_by_network_and_by_insertion_equal_numpy():
    """`context._sort` sorts every count up to NETWORK_MAX and beyond (ties, infinities) as np.sort
    does, and with `stable` keeps -0.0 and 0.0 in their order (the only equal values it could swap)."""
    from simulator.context import NETWORK_MAX, _sort

    rng = np.random.default_rng(7)
    for count in range(NETWORK_MAX + 9):
        for _ in range(20):
            values = np.round(rng.normal(0, 3, count), int(rng.integers(0, 3)))
            values[rng.random(count) < 0.05] = np.inf
            buf = np.full(max(count, NETWORK_MAX) + 1, 123.0)
            buf[:count] = values
            _sort(buf, count)
            np.testing.assert_array_equal(buf[:count], np.sort(values), err_msg=str(count))
    buf = np.array([0.0, -0.0, 1.0, -0.0, 0.0] + [9.0] * NETWORK_MAX)
    _sort(buf, 5, True)
    assert np.signbit(buf[:5]).tolist() == [False, True, True, False, False]


def test_a_median_among_signed_zeros_is_the_insertion_sorts():
    """With -0.0 among the values, the median is the one the stable sort leaves in the middle."""
    from simulator.context import NETWORK_MAX, _median_and_mad

    buf = np.empty(NETWORK_MAX + 1)
    median, _, count = _median_and_mad(np.array([0.0, -0.0, 5.0]), buf)
    assert count == 3 and median == 0.0 and np.signbit(median)
